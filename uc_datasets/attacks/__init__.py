"""Baselines of the paper's Table 1 under one contract with Unlearnable Clusters.

Every method's ``fit(ds, *, image_column="image", label_column=None, ...)`` returns a
protector (a :class:`~uc_datasets.protection.protector.BaseProtector`) that goes through the same
``ds.map(protector, batched=True)``, :func:`~uc_datasets.verify`, ``save_pretrained`` /
:func:`~uc_datasets.load_protector` and ``push_to_hub`` as a UC protector.

| name | method | perturbation | model |
| --- | --- | --- | --- |
| ``uc`` | Unlearnable Clusters (the product) | cluster-wise | frozen surrogate encoder |
| ``eminn`` | error-minimising noise (Huang et al. 2021), min-min | sample-wise | ResNet-18 trained alongside |
| ``eminn-classwise`` | the same, one perturbation per class | class-wise | ResNet-18 trained alongside |
| ``emaxn`` | error-maximising noise, untargeted PGD | sample-wise | ResNet-18 trained on clean data |
| ``advpoison`` | class-targeted PGD poisons (Fowl et al. 2021) | sample-wise | ResNet-18 trained on clean data |
| ``synper`` | synthetic linearly separable noise (Yu et al. 2022) | class-wise (+ per-image draw) | none |
| ``deepconfuse`` | DeepConfuse (Feng et al. 2019), an auto-encoder trained through the classifier's pseudo-updates | sample-wise | auto-encoder + ResNet-18 trained alternately |

**Labels.** ``label_column=None`` (default) is the paper's label-agnostic setup: the
baselines use the class a surrogate classifier predicts (``surrogate="efficientnet-lite0"``,
ImageNet classes; or a ``*ForImageClassification`` checkpoint). ``label_column="label"`` is
label-consistent mode (the dataset's own labels; the "same labels" column of Figure 2a). UC
itself uses no labels, and ``fit_method("uc", ..., label_column=...)`` is refused.

Example:
    >>> from uc_datasets.attacks import fit_method
    >>> prot = fit_method("eminn", ds, label_column="label", steps=20)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable

import datasets

from ..protection.protector import BaseProtector
from . import advpoison, deepconfuse, emaxn, eminn, synper
from .base import BaselineConfig, BaselineProtector, UnseenImageError
from .labels import LabelSourceError, load_classifier
from .synper import SynPerProtector

__all__ = ["DEFERRED", "METHODS", "BaselineConfig", "BaselineProtector", "LabelSourceError", "SynPerProtector",
           "UnseenImageError", "fit_method", "load_classifier", "method_arguments"]


def _fit_uc(ds: datasets.Dataset, *, image_column: str = "image", label_column: str | None = None,
            **kwargs: object) -> BaseProtector:
    """Unlearnable Clusters: ``UnlearnableClusters(**kwargs).fit(ds, image_column, label_column=...)``;
    a ``label_column`` selects its label-aware mode (keys nested in the classes)."""
    from ..protection.unlearnable_clusters import UnlearnableClusters

    return UnlearnableClusters(**kwargs).fit(ds, image_column=image_column, label_column=label_column)


#: Method name -> fit function ``(ds, *, image_column, label_column, **kwargs) -> protector``.
METHODS: dict[str, Callable[..., BaseProtector]] = {
    "uc": _fit_uc,
    "eminn": functools.partial(eminn.fit, perturbation="samplewise"),
    "eminn-classwise": functools.partial(eminn.fit, perturbation="classwise"),
    "emaxn": emaxn.fit,
    "advpoison": advpoison.fit,
    "synper": synper.fit,
    "deepconfuse": deepconfuse.fit,
}

#: Methods of the paper that are not implemented, with the reason (none left).
DEFERRED: dict[str, str] = {}


def fit_method(method: str, ds: datasets.Dataset, *, image_column: str = "image", label_column: str | None = None,
               **kwargs: object) -> BaseProtector:
    """Fit protection method ``method`` (a key of :data:`METHODS`) on ``ds`` and return its protector.

    Args:
        method: ``uc``, ``eminn``, ``eminn-classwise``, ``emaxn``, ``advpoison``, ``synper`` or ``deepconfuse``
            (case-insensitive; ``_`` works for ``-``).
        ds: the dataset to protect.
        image_column: its image column.
        label_column: None = label-agnostic (the baselines use the surrogate classifier's
            predicted classes); a column name = label-consistent (the dataset's labels); for
            ``uc`` the label-aware mode (clusters nested in the classes).
        **kwargs: the method's own arguments (``epsilon``, ``seed``, ``steps``, ``surrogate``,
            ``device``, ``progress``, ...; for ``uc`` the :class:`~uc_datasets.UCConfig` fields).

    Returns:
        A protector for ``ds.map(protector, batched=True)``.

    Raises:
        ValueError: unknown method; NotImplementedError: a method listed in :data:`DEFERRED`.

    Example:
        >>> prot = fit_method("synper", ds, label_column="label", epsilon=16 / 255)  # doctest: +SKIP
    """
    key = method.strip().lower().replace("_", "-")
    if key in DEFERRED:
        raise NotImplementedError(DEFERRED[key])
    if key not in METHODS:
        deferred = f" ({', '.join(DEFERRED)} deferred)" if DEFERRED else ""
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}{deferred}.")
    return METHODS[key](ds, image_column=image_column, label_column=label_column, **kwargs)


def method_arguments(method: str) -> list[str]:
    """The keyword arguments ``fit_method(method, ...)`` accepts besides ``image_column`` and ``label_column``.

    For a command line that forwards only what a method understands.

    Example:
        >>> "steps" in method_arguments("emaxn"), "n_clusters" in method_arguments("uc")
        (True, True)
    """
    key = method.strip().lower().replace("_", "-")
    if key not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    if key == "uc":
        from ..protection.config import UCConfig
        from ..protection.unlearnable_clusters import UnlearnableClusters

        init = [p for p in inspect.signature(UnlearnableClusters).parameters if p != "kwargs"]
        return init + [f.name for f in dataclasses.fields(UCConfig) if f.name not in init]
    fn = METHODS[key]
    bound = set(fn.keywords) if isinstance(fn, functools.partial) else set()
    skip = {"ds", "image_column", "label_column"} | bound
    return [p for p in inspect.signature(fn).parameters if p not in skip]
