"""Baselines of the paper's Table 1, under one contract with Unlearnable Clusters.

One small module per method (``eminn``, ``emaxn``, ``advpoison``, ``synper``,
``deepconfuse``), each with ``fit(ds, *, image_column="image", label_column=None, ...)``
returning a :class:`BaselineProtector` (a :class:`~uc_datasets.base.BaseProtector`), so the
protector goes through the same ``ds.map(protector, batched=True)``,
:func:`~uc_datasets.verify`, ``save_pretrained`` / :func:`~uc_datasets.load_protector` and
``push_to_hub`` as a UC protector. ``base`` holds what they share (config, protector, fit
preparation), ``labels`` the label sources, ``optim`` the classifier training and PGD.

Methods are picked by name through :mod:`uc_datasets.registry` (``fit_method``,
``uc-datasets protect --method``), which lists UC and every baseline.

Example:
    >>> from uc_datasets.attacks import eminn
    >>> prot = eminn.fit(ds, label_column="label", steps=20)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

from .base import BaselineConfig, BaselineProtector, UnseenImageError
from .labels import LabelSourceError, load_classifier
from .synper import SynPerProtector

__all__ = ["BaselineConfig", "BaselineProtector", "LabelSourceError", "SynPerProtector", "UnseenImageError",
           "load_classifier"]
