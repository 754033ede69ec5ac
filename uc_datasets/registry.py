"""One registry of protection methods: Unlearnable Clusters and the Table 1 baselines.

Every method's fit has the same contract, ``fit(ds, *, image_column="image",
label_column=None, **kwargs) -> protector`` (a :class:`~uc_datasets.core.protector.BaseProtector`), so
``ds.map(protector, batched=True)``, :func:`~uc_datasets.core.verify`, ``save_pretrained`` /
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

Every method is a :class:`~uc_datasets.core.method.BaseMethod` subclass with a typed config;
a method's accepted keywords are its config's fields plus its run options. Everything is
imported explicitly here, one function per method and per protector class, and only when that
name is asked for: :data:`METHODS` and :data:`PROTECTOR_TYPES` list their names without
importing anything, so ``load_protector`` loads the one protector class a ``config.json``
names (a UC protector without a surrogate needs neither transformers nor any training code),
and nothing registers itself as a side effect of an import.

Example:
    >>> from uc_datasets.registry import fit_method
    >>> prot = fit_method("eminn", ds, label_column="label", steps=20)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import datasets

    from uc_datasets.core.method import BaseMethod
    from uc_datasets.core.protector import BaseProtector
    from uc_datasets.core.surrogates import Surrogate

__all__ = ["DEFERRED", "METHODS", "PROTECTOR_TYPES", "card_method_name", "fit_method", "get_method",
           "load_protector", "method_arguments", "protector_class"]

T = TypeVar("T")


class LazyClasses(Mapping[str, T], Generic[T]):
    """A read-only ``{name: class}`` whose classes are imported on first access, one at a time.

    Listing the names (``list``, ``in``, ``len``) imports nothing; ``[name]`` runs that name's
    loader (a function with an explicit import) once and keeps the class.

    Example:
        >>> classes = LazyClasses({"int": lambda: int})
        >>> "int" in classes, classes["int"]
        (True, <class 'int'>)
    """

    def __init__(self, loaders: dict[str, Callable[[], type[T]]]):
        self._loaders = dict(loaders)
        self._loaded: dict[str, type[T]] = {}

    def __getitem__(self, name: str) -> type[T]:
        if name not in self._loaded:
            self._loaded[name] = self._loaders[name]()
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:  # Mapping's would import the class to find out
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __repr__(self) -> str:
        return f"LazyClasses({list(self._loaders)})"


# ---------------------------------------------------------------------------- protector classes
def _uc_protector() -> type[BaseProtector]:
    from uc_datasets.methods.uc.protector import UCProtector

    return UCProtector


def _baseline_protector() -> type[BaseProtector]:
    from uc_datasets.methods.baseline import BaselineProtector

    return BaselineProtector


def _synper_protector() -> type[BaseProtector]:
    from uc_datasets.methods.synper import SynPerProtector

    return SynPerProtector


#: protector_type (config.json) -> class, imported when a protector of that type is loaded.
#: Each key is its class's ``protector_type`` (``tests/test_registry.py`` checks that they agree).
PROTECTOR_TYPES: LazyClasses[BaseProtector] = LazyClasses({
    "unlearnable-clusters": _uc_protector, "baseline-perturbations": _baseline_protector,
    "baseline-synper": _synper_protector,
})


# ---------------------------------------------------------------------------- methods
def _uc() -> type[BaseMethod]:
    from uc_datasets.methods.uc.unlearnable_clusters import UnlearnableClusters

    return UnlearnableClusters


def _eminn() -> type[BaseMethod]:
    from uc_datasets.methods.eminn import EMinN

    return EMinN


def _eminn_classwise() -> type[BaseMethod]:
    from uc_datasets.methods.eminn import EMinNClasswise

    return EMinNClasswise


def _emaxn() -> type[BaseMethod]:
    from uc_datasets.methods.emaxn import EMaxN

    return EMaxN


def _advpoison() -> type[BaseMethod]:
    from uc_datasets.methods.advpoison import AdvPoison

    return AdvPoison


def _synper() -> type[BaseMethod]:
    from uc_datasets.methods.synper import SynPer

    return SynPer


def _deepconfuse() -> type[BaseMethod]:
    from uc_datasets.methods.deepconfuse import DeepConfuse

    return DeepConfuse


#: Method name -> its class (a :class:`~uc_datasets.core.method.BaseMethod`), imported on first use.
#: Each key is its class's ``name`` (``tests/test_registry.py`` checks that they agree).
METHODS: LazyClasses[BaseMethod] = LazyClasses({
    "uc": _uc, "eminn": _eminn, "eminn-classwise": _eminn_classwise, "emaxn": _emaxn, "advpoison": _advpoison,
    "synper": _synper, "deepconfuse": _deepconfuse,
})

#: Methods of the paper that are not implemented, with the reason (none left).
DEFERRED: dict[str, str] = {}


def protector_class(protector_type: str | None) -> type[BaseProtector]:
    """The protector class saved under ``protector_type``; raises ``ValueError`` for unknown types.

    Example:
        >>> protector_class("unlearnable-clusters").__name__
        'UCProtector'
    """
    if protector_type not in PROTECTOR_TYPES:
        raise ValueError(f"unknown protector_type {protector_type!r} in config.json; known: "
                         f"{sorted(PROTECTOR_TYPES)}. Was it saved by a newer uc-datasets?")
    return PROTECTOR_TYPES[protector_type]


def load_protector(path: str | os.PathLike, *, surrogate: Surrogate | None = None, revision: str | None = None,
                   cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                   local_files_only: bool = False, token: str | bool | None = None) -> BaseProtector:
    """Load a protector from a directory written by ``save_pretrained``, or from a Hub model repo.

    A ``path`` that is not an existing directory is taken as a Hub model repo id (pushed by
    ``protector.push_to_hub``); ``revision``, ``cache_dir``, ``force_download``,
    ``local_files_only`` and ``token`` (private repos) are ``huggingface_hub``'s, as in
    ``from_pretrained``. The class (UC or one of the baselines) follows ``protector_type`` in
    ``config.json`` and is the only method module imported; ``surrogate`` passes an already
    loaded surrogate (UC) or label classifier (baselines).

    Example:
        >>> uc_protect = load_protector("protector/")  # doctest: +SKIP
        >>> uc_protect = load_protector("me/pets-protector", revision="v2")  # doctest: +SKIP
    """
    from uc_datasets.core.persistence import invalid_protector_errors, read_protector_dir
    from uc_datasets.core.protector_hub import resolve_protector_path

    cfg, tensors, d = read_protector_dir(resolve_protector_path(
        path, revision=revision, cache_dir=cache_dir, force_download=force_download,
        local_files_only=local_files_only, token=token))
    with invalid_protector_errors(d):
        return protector_class(cfg.get("protector_type"))._from_parts(cfg, tensors, surrogate=surrogate)


def _key(method: str) -> str:
    return method.strip().lower().replace("_", "-")


def get_method(method: str) -> type[BaseMethod]:
    """The method class named ``method`` (case-insensitive; ``_`` works for ``-``).

    Example:
        >>> get_method("EMinN_classwise").names
        ('EMinN-classwise',)
    """
    key = _key(method)
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
        **kwargs: the method's settings (its config's fields: ``epsilon``, ``seed``, ``steps``,
            ``surrogate``, ...), its run options (``device``, ``progress``, ...) and, for a
            distributed method, its fit options (``accelerator``, ``output_dir``, ``resume``, ...).

    Returns:
        A protector for ``ds.map(protector, batched=True)``.

    Raises:
        ValueError: unknown method or a bad setting; NotImplementedError: a method listed in :data:`DEFERRED`.

    Example:
        >>> prot = fit_method("synper", ds, label_column="label", epsilon=16 / 255)  # doctest: +SKIP
    """
    cls = get_method(method)
    run = {k: kwargs.pop(k) for k in cls.fit_options if k in kwargs}
    return cls(**kwargs).fit(ds, image_column=image_column, label_column=label_column, **run)


def method_arguments(method: str) -> list[str]:
    """The keyword arguments ``fit_method(method, ...)`` accepts besides ``image_column`` and ``label_column``.

    For a command line that forwards only what a method understands.

    Example:
        >>> "steps" in method_arguments("emaxn"), "n_clusters" in method_arguments("uc")
        (True, True)
    """
    cls = get_method(method)
    return cls.arguments() + list(cls.fit_options)


def card_method_name(text: str) -> str:
    """The card name (``protector.method``) of a registered method, given its key or one of its names.

    ``uc-datasets push --method`` uses it: every registered method is accepted.

    Example:
        >>> card_method_name("uc"), card_method_name("UC-CLIP"), card_method_name("eminn-classwise")
        ('UC', 'UC-CLIP', 'EMinN-classwise')
    """
    for key, cls in METHODS.items():
        if text in cls.names:
            return text
        if _key(text) == key:
            return cls.names[0]
    names = [n for cls in METHODS.values() for n in cls.names]
    raise ValueError(f"unknown method {text!r}; choose a registered method: {', '.join(METHODS)} "
                     f"(or a card name: {', '.join(names)}).")
