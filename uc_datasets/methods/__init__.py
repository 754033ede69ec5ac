"""The protection methods, one module each, under one contract.

``uc/`` is Unlearnable Clusters (the product: clustering, perturbation families, the fit loop,
its protector); ``eminn``, ``emaxn``, ``advpoison``, ``synper`` and ``deepconfuse`` are the
baselines of the paper's Table 1. Every fit returns a
:class:`~uc_datasets.core.protector.BaseProtector`, so a protector goes through the same
``ds.map(protector, batched=True)``, :func:`~uc_datasets.verify`, ``save_pretrained`` /
:func:`~uc_datasets.load_protector` and ``push_to_hub``. ``baseline`` holds what the
baselines share (config, protector, fit preparation), ``optim`` classifier training and PGD.

Methods import only ``uc_datasets.core`` and each other, never ``evaluation``; methods are
picked by name through :mod:`uc_datasets.registry`. Each is a
:class:`~uc_datasets.core.method.BaseMethod` with a typed config. This file imports nothing, so
``import uc_datasets.methods.uc.config`` stays light.

Example:
    >>> from uc_datasets.methods.eminn import EMinN
    >>> prot = EMinN(steps=20).fit(ds, label_column="label")  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""
