"""uc_datasets: make Hugging Face image datasets unlearnable with Unlearnable Clusters.

Example:
    >>> from uc_datasets import UnlearnableClusters, load_protector  # doctest: +SKIP
    >>> uc_protect = UnlearnableClusters(surrogate="efficientnet-lite0", n_clusters=10).fit(ds)  # doctest: +SKIP
    >>> protected = ds.map(uc_protect, batched=True)  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from uc_datasets._version import __version__

#: Public name -> the module that defines it. Imported on first use (PEP 562), so that
#: ``import uc_datasets`` and ``uc-datasets --help`` do not pay for torch, datasets and transformers.
_EXPORTS = {
    "BaseProtector": "core.protector",
    "UCConfig": "methods.uc.config",
    "UCProtector": "methods.uc.protector",
    "load_protector": "registry",
    "fit_method": "registry",
    "load_surrogate": "core.surrogates",
    "UnlearnableClusters": "methods.uc.unlearnable_clusters",
    "VerifyReport": "core.verify",
    "verify": "core.verify",
}

if TYPE_CHECKING:
    from uc_datasets.core.protector import BaseProtector
    from uc_datasets.core.surrogates import load_surrogate
    from uc_datasets.core.verify import VerifyReport, verify
    from uc_datasets.methods.uc.config import UCConfig
    from uc_datasets.methods.uc.protector import UCProtector
    from uc_datasets.methods.uc.unlearnable_clusters import UnlearnableClusters
    from uc_datasets.registry import fit_method, load_protector


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["BaseProtector", "UCConfig", "UCProtector", "UnlearnableClusters", "VerifyReport", "__version__",
           "fit_method", "load_protector", "load_surrogate", "verify"]
