"""One registry of protection methods: Unlearnable Clusters and the Table 1 baselines.

Every method's fit has the same contract, ``fit(ds, *, image_column="image",
label_column=None, **kwargs) -> protector`` (a :class:`~uc_datasets.base.BaseProtector`), so
``ds.map(protector, batched=True)``, :func:`~uc_datasets.verify`, ``save_pretrained`` /
:func:`load_protector` and ``push_to_hub`` work the same for all of them.

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
baselines use the class a surrogate classifier predicts (``surrogate="efficientnet-lite0"``);
``label_column="label"`` is label-consistent mode (the dataset's own labels). For ``uc`` a
``label_column`` selects its label-aware mode (clusters nested in the classes).

Everything is imported explicitly here: this module knows every method and every protector
class, and nothing registers itself as a side effect of an import.

Example:
    >>> from uc_datasets.registry import fit_method
    >>> prot = fit_method("eminn", ds, label_column="label", steps=20)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

import datasets

from .attacks import advpoison, deepconfuse, emaxn, eminn, synper
from .attacks.base import METHOD_NAMES, BaselineProtector
from .attacks.synper import SynPerProtector
from .base import (
    BaseProtector,
    build_from_parts,
    read_protector_dir,
    resolve_protector_path,
)
from .protection.config import UCConfig
from .protection.protector import UCProtector
from .protection.surrogates import Surrogate
from .protection.unlearnable_clusters import UnlearnableClusters

__all__ = ["DEFERRED", "METHODS", "PROTECTOR_TYPES", "Method", "card_method_name", "fit_method", "get_method",
           "load_protector", "method_arguments", "protector_class"]

#: protector_type (config.json) -> class.
PROTECTOR_TYPES: dict[str, type[BaseProtector]] = {
    cls.protector_type: cls for cls in (UCProtector, BaselineProtector, SynPerProtector)
}


def protector_class(protector_type: str | None) -> type[BaseProtector]:
    """The protector class saved under ``protector_type``; raises ``ValueError`` for unknown types."""
    if protector_type not in PROTECTOR_TYPES:
        raise ValueError(f"unknown protector_type {protector_type!r} in config.json; known: "
                         f"{sorted(PROTECTOR_TYPES)}. Was it saved by a newer uc-datasets?")
    return PROTECTOR_TYPES[protector_type]


def load_protector(path: str | os.PathLike, *, surrogate: Surrogate | None = None, token: str | None = None,
                   revision: str | None = None) -> BaseProtector:
    """Load a protector from a directory written by ``save_pretrained``, or from a Hub model repo.

    A ``path`` that is not an existing directory is taken as a Hub model repo id (pushed by
    ``protector.push_to_hub``; ``token`` reads private repos). The class (UC or one of the
    baselines) follows ``protector_type`` in ``config.json``; ``surrogate`` passes an already
    loaded surrogate (UC) or label classifier (baselines).

    Example:
        >>> uc_protect = load_protector("protector/")  # doctest: +SKIP
        >>> uc_protect = load_protector("me/pets-protector")  # doctest: +SKIP
    """
    cfg, tensors, d = read_protector_dir(resolve_protector_path(path, token=token, revision=revision))
    try:
        cls = protector_class(cfg.get("protector_type"))
    except ValueError as err:
        from .base import InvalidProtectorError

        raise InvalidProtectorError(f"this is not a valid protector directory: {d}: {err}") from None
    return build_from_parts(cls, cfg, tensors, d, surrogate=surrogate)


def _fit_uc(ds: datasets.Dataset, *, image_column: str = "image", label_column: str | None = None,
            accelerator=None, output_dir: str | None = None, resume: bool = False, num_workers: int = 0,
            **kwargs: object) -> UCProtector:
    """Unlearnable Clusters: ``UnlearnableClusters(**kwargs).fit(ds, image_column, label_column=...)``;
    a ``label_column`` selects its label-aware mode (keys nested in the classes)."""
    return UnlearnableClusters(**kwargs).fit(ds, image_column=image_column, label_column=label_column,
                                             accelerator=accelerator, output_dir=output_dir, resume=resume,
                                             num_workers=num_workers)


def _uc_arguments() -> list[str]:
    init = [p for p in inspect.signature(UnlearnableClusters).parameters if p != "kwargs"]
    return init + [f.name for f in dataclasses.fields(UCConfig) if f.name not in init]


def _signature_arguments(fn: Callable) -> list[str]:
    bound = set(fn.keywords) if isinstance(fn, functools.partial) else set()
    skip = {"ds", "image_column", "label_column"} | bound
    return [p for p in inspect.signature(fn).parameters if p not in skip]


@dataclass(frozen=True)
class Method:
    """A registered protection method.

    ``fit(ds, *, image_column, label_column, **kwargs)`` returns its protector; ``distributed``
    methods also take ``accelerator``, ``output_dir``, ``resume`` and ``num_workers`` (a
    data-parallel, checkpointed fit); ``names`` are the names ``protector.method`` gives (dataset
    cards); ``default_surrogate`` is used by the command line when ``--surrogate`` is not given.
    """

    fit: Callable[..., BaseProtector]
    names: tuple[str, ...]
    distributed: bool = False
    default_surrogate: str | None = None
    arguments: Callable[[], list[str]] | None = None

    def accepted_arguments(self) -> list[str]:
        """The keywords ``fit`` accepts besides ``image_column`` and ``label_column``."""
        return self.arguments() if self.arguments is not None else _signature_arguments(self.fit)


#: Method name -> :class:`Method`.
METHODS: dict[str, Method] = {
    "uc": Method(_fit_uc, ("UC", "UC-CLIP", "UC (label-aware)", "UC-CLIP (label-aware)"), distributed=True,
                 default_surrogate="openai/clip-vit-base-patch32", arguments=_uc_arguments),
    "eminn": Method(functools.partial(eminn.fit, perturbation="samplewise"), (METHOD_NAMES["eminn"],)),
    "eminn-classwise": Method(functools.partial(eminn.fit, perturbation="classwise"),
                              (f"{METHOD_NAMES['eminn']}-classwise",)),
    "emaxn": Method(emaxn.fit, (METHOD_NAMES["emaxn"],)),
    "advpoison": Method(advpoison.fit, (METHOD_NAMES["advpoison"],)),
    "synper": Method(synper.fit, (METHOD_NAMES["synper"],)),
    "deepconfuse": Method(deepconfuse.fit, (METHOD_NAMES["deepconfuse"],)),
}

#: Methods of the paper that are not implemented, with the reason (none left).
DEFERRED: dict[str, str] = {}


def get_method(method: str) -> Method:
    """The registered :class:`Method` named ``method`` (case-insensitive; ``_`` works for ``-``)."""
    key = method.strip().lower().replace("_", "-")
    if key in DEFERRED:
        raise NotImplementedError(DEFERRED[key])
    if key not in METHODS:
        deferred = f" ({', '.join(DEFERRED)} deferred)" if DEFERRED else ""
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}{deferred}.")
    return METHODS[key]


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
    return get_method(method).fit(ds, image_column=image_column, label_column=label_column, **kwargs)


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
    return METHODS[key].accepted_arguments()


def card_method_name(text: str) -> str:
    """The card name (``protector.method``) of a registered method, given its key or one of its names.

    ``uc-datasets push --method`` uses it: every registered method is accepted.

    Example:
        >>> card_method_name("uc"), card_method_name("UC-CLIP"), card_method_name("eminn-classwise")
        ('UC', 'UC-CLIP', 'EMinN-classwise')
    """
    for key, spec in METHODS.items():
        if text in spec.names:
            return text
        if text.strip().lower().replace("_", "-") == key:
            return spec.names[0]
    names = [n for spec in METHODS.values() for n in spec.names]
    raise ValueError(f"unknown method {text!r}; choose a registered method: {', '.join(METHODS)} "
                     f"(or a card name: {', '.join(names)}).")
