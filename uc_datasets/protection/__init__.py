"""The protection side: from a dataset to a fitted Unlearnable Clusters protector.

Data flows one way: ``surrogates`` (frozen encoder features) -> ``clustering`` (K-means,
target permutation) -> the perturbation families (``generator``, ``patterns``) -> ``fit``
(the cluster-wise training loop, ``distributed`` helpers) -> ``protector`` (the fitted
``UCProtector``); ``unlearnable_clusters`` is the estimator and ``pipeline`` the main job
(protect, verify, save). ``config`` holds :class:`UCConfig`.

This file imports nothing, so ``import uc_datasets.protection.config`` stays light.
"""
