"""The method contract: a typed config, run options, and ``fit(ds) -> protector``.

Every protection method (Unlearnable Clusters and each baseline) is a subclass of
:class:`BaseMethod` with a :class:`~uc_datasets.core.config.BaseConfig` dataclass of its
settings (checked on creation, by the config's ``_check_params``). The registry and the
command line read a method's options from the class (:meth:`BaseMethod.arguments`), so no
list of them is written twice.

Example:
    >>> from uc_datasets.methods.synper import SynPer
    >>> prot = SynPer(epsilon=8 / 255, grid=4).fit(ds, label_column="label")  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar

from uc_datasets.core.config import BaseConfig
from uc_datasets.core.imaging import DEFAULT_MAX_PIXELS
from uc_datasets.core.progress import progress_enabled

if TYPE_CHECKING:
    import datasets

    from uc_datasets.core.protector import BaseProtector

__all__ = ["BaseMethod"]

class BaseMethod:
    """A protection method: ``Method(**settings).fit(ds, image_column=..., label_column=...)``.

    A subclass sets:

    * ``name``: its registry key (``"eminn"``); ``names``: the card names its protectors give
      (``protector.method``; the first is the default);
    * ``config_class``: its settings dataclass; every keyword of the constructor that is not a
      run option is one of its fields;
    * ``distributed``: whether ``fit`` also takes ``accelerator``, ``output_dir``, ``resume`` and
      ``num_workers`` (:attr:`fit_options`);
    * ``default_surrogate``: the surrogate the command line uses when none is given.

    Run options (``device``, ``max_pixels``, ``progress``) say where and how a fit runs; they
    are not saved. ``surrogate`` may be a loaded model instead of a name: it is used as is and
    its name goes into the config.
    """

    name: ClassVar[str] = ""
    names: ClassVar[tuple[str, ...]] = ()
    config_class: ClassVar[type[BaseConfig]] = BaseConfig
    distributed: ClassVar[bool] = False
    default_surrogate: ClassVar[str | None] = None
    #: Constructor keywords that are not settings.
    run_options: ClassVar[tuple[str, ...]] = ("device", "max_pixels", "progress")
    #: ``fit`` keywords besides ``image_column`` and ``label_column`` (distributed methods).
    fit_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: BaseConfig | None = None, *, device: Any = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 progress: bool | None = None, **settings: Any) -> None:
        surrogate = settings.get("surrogate")
        self._surrogate = None
        if surrogate is not None and not isinstance(surrogate, str):  # a loaded model: keep it, save its name
            self._surrogate, settings["surrogate"] = surrogate, surrogate.name
        if config is not None and settings:
            raise TypeError(f"{type(self).__name__}: pass a {self.config_class.__name__} or its fields as keywords, "
                            f"not both (got config and {sorted(settings)}).")
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}.")
        unknown = sorted(set(settings) - {f.name for f in fields(self.config_class)})
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown settings {unknown}; it accepts "
                            f"{', '.join(self.arguments())}.")
        self.config = config if config is not None else self.config_class(**settings)
        self.device = device
        self.max_pixels = max_pixels
        self.progress = progress_enabled(progress)  # None: huggingface_hub's setting (HF_HUB_DISABLE_PROGRESS_BARS)

    @classmethod
    def arguments(cls) -> list[str]:
        """Every keyword the constructor accepts: the config's fields, then the run options.

        Example:
            >>> from uc_datasets.methods.synper import SynPer
            >>> "grid" in SynPer.arguments() and "device" in SynPer.arguments()
            True
        """
        return [f.name for f in fields(cls.config_class) if f.init] + list(cls.run_options)

    def fit(self, ds: datasets.Dataset, *, image_column: str = "image",
            label_column: str | None = None) -> BaseProtector:
        """Fit on every image of ``ds[image_column]`` and return the protector.

        ``label_column=None`` is label-agnostic; a column name selects the method's use of the
        publisher's labels (label-consistent baselines, UC's label-aware mode).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
