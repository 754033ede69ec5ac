"""Unlearnable Clusters: from a dataset to a fitted protector.

Data flows one way: :mod:`~uc_datasets.core.surrogates` (frozen encoder features) ->
``clustering`` (K-means, target permutation) -> the perturbation families (``generator``,
``patterns``, ``keyed_noise``, ``contrastive_noise``) -> ``fit`` (the cluster-wise training
loop, ``distributed`` helpers) -> ``protector`` (the fitted ``UCProtector``);
``unlearnable_clusters`` is the estimator. ``config`` holds :class:`UCConfig`.

This file imports nothing, so ``import uc_datasets.methods.uc.config`` stays light.
"""
