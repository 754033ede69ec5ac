"""What the baselines share: their config, their protector, and the data preparation of a fit.

Every baseline's ``fit(ds, ...)`` returns a :class:`BaselineProtector` (a
:class:`~uc_datasets.methods.uc.protector.BaseProtector`), so it goes through the same
``ds.map(protector, batched=True)``, ``verify``, ``save_pretrained``/``load_protector`` and
``push_to_hub`` as an Unlearnable Clusters protector.

How an image finds its perturbation at map time:

* **sample-wise** (any label source): the content hash of the image's pixels
  (:func:`~uc_datasets.core.imaging.content_key`); an image not seen during fit raises
  :class:`UnseenImageError`, never passes unprotected.
* **class-wise, label-consistent**: the value of ``label_column`` in the mapped batch; a class
  not seen during fit raises.
* **class-wise, label-agnostic**: fit-set images get their cached predicted class; other images
  the surrogate's most probable class *among the fitted classes*.

The hash ignores the encoding and row order, so a protector works after ``shuffle``,
``select`` or a re-encode to PNG; an edited, resized or lossy re-encoded image is a new image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from PIL import Image

from uc_datasets._version import __version__
from uc_datasets.core.config import BaseConfig, check_int, check_positive, choice
from uc_datasets.core.imaging import DEFAULT_MAX_PIXELS, content_key, working_tensor
from uc_datasets.core.labels import LabelSourceError, dataset_labels, load_classifier, predict_classes
from uc_datasets.core.method import BaseMethod
from uc_datasets.core.protector import BaseProtector, default_device
from uc_datasets.core.surrogates import EFFICIENTNET_LITE0, Surrogate

if TYPE_CHECKING:  # datasets and accelerate are imported where a fit uses them, not when a protector loads
    import datasets

logger = logging.getLogger(__name__)

__all__ = ["BaselineConfig", "BaselineMethod", "BaselineProtector", "BaselineSettings", "FitData", "UnseenImageError",
           "prepare_fit"]

PERTURBATIONS = ("samplewise", "classwise")
LABEL_SOURCES = ("surrogate", "dataset")
#: Paper names of the methods, for ``protector.method`` and dataset cards.
METHOD_NAMES = {"eminn": "EMinN", "emaxn": "EMaxN", "advpoison": "AdvPoison", "synper": "SynPer",
                "deepconfuse": "DeepConfuse"}


class UnseenImageError(LookupError):
    """A sample-wise protector was asked to protect an image it was not fitted on."""


@dataclass
class BaselineConfig(BaseConfig):
    """Settings and outcome of a baseline fit, saved in the protector's ``config.json``.

    ``params`` holds the method's own hyper-parameters (steps, step sizes, model, ...);
    ``classes`` the class values in row order (ImageNet indices in label-agnostic mode, the
    label column's values in label-consistent mode); ``n_clusters`` the number of distinct
    perturbations (classes, or fitted images for sample-wise methods).

    Example:
        >>> BaselineConfig(method="synper", epsilon=16 / 255).epsilon_levels
        16
    """

    method: str
    epsilon: float = 16 / 255
    perturbation: str = choice("samplewise", PERTURBATIONS)
    label_source: str = choice("surrogate", LABEL_SOURCES)
    label_column: str | None = None
    surrogate: str | None = EFFICIENTNET_LITE0
    surrogate_image_size: int | None = None
    working_size: int = 224
    seed: int = 0
    feature_batch_size: int = 64
    classes: list = field(default_factory=list)
    n_clusters: int = 0
    params: dict = field(default_factory=dict)

    def _check_params(self) -> None:
        """Raise ``ValueError`` with a fix for every bad setting."""
        if self.label_source == "dataset" and not self.label_column:
            raise ValueError("label-consistent mode (label_source='dataset') needs label_column.")
        if self.label_source == "surrogate" and not self.surrogate:
            raise LabelSourceError("label-agnostic mode (label_column=None) needs a surrogate classifier, e.g. "
                                   f"surrogate='{EFFICIENTNET_LITE0}'; or pass label_column for label-consistent mode.")
        if not isinstance(self.working_size, int) or self.working_size < 1:
            raise ValueError(f"working_size must be a positive integer, got {self.working_size!r}.")


@dataclass
class BaselineSettings(BaseConfig):
    """The settings every baseline shares; each baseline's config adds its own.

    ``surrogate`` (with ``surrogate_image_size``) is the label-agnostic classifier, unused with
    a ``label_column``; ``working_size`` the working resolution for images of mixed sizes;
    ``seed`` seeds everything (the same seed on the same machine gives the same protector).

    Example:
        >>> BaselineSettings(epsilon=8 / 255).epsilon_levels
        8
    """

    epsilon: float = 16 / 255
    surrogate: str | None = EFFICIENTNET_LITE0
    surrogate_image_size: int | None = None
    working_size: int = 224
    seed: int = 0

    #: The fields of this class (what :meth:`own_params` leaves out).
    _SHARED: ClassVar[tuple[str, ...]] = ("epsilon", "surrogate", "surrogate_image_size", "working_size", "seed")

    def _check_params(self) -> None:
        if not isinstance(self.working_size, int) or isinstance(self.working_size, bool) or self.working_size < 1:
            raise ValueError(f"working_size must be a positive integer, got {self.working_size!r}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}.")

    def own_params(self) -> dict:
        """The method's own settings (every field but the shared ones), as stored in ``BaselineConfig.params``."""
        return {k: v for k, v in self.to_dict().items() if k not in self._SHARED}


@dataclass
class FitData:
    """A dataset prepared for a baseline fit.

    ``x`` uint8 ``(N, 3, h, w)`` at the working resolution, ``grey`` bool ``(N,)``, ``keys`` the
    content hash of each row, ``y`` int64 ``(N,)`` the row's class as a position in
    ``classes``, ``classifier`` the label-agnostic surrogate (None in label-consistent mode).
    """

    x: torch.Tensor
    grey: torch.Tensor
    keys: list[bytes]
    y: torch.Tensor
    classes: list
    hw: tuple[int, int]
    classifier: Surrogate | None
    label_info: dict
    seconds: float

    def unique_rows(self) -> tuple[torch.Tensor, list[bytes]]:
        """``(row -> unique-image index (N,), unique keys)``: duplicates share one sample-wise delta."""
        first: dict[bytes, int] = {}
        idx = [first.setdefault(k, len(first)) for k in self.keys]
        return torch.as_tensor(idx, dtype=torch.long), list(first)


def prepare_fit(ds: datasets.Dataset, *, image_column: str, label_column: str | None, surrogate: str | Surrogate | None,
                surrogate_image_size: int | None, working_size: int, device: torch.device,
                max_pixels: int = DEFAULT_MAX_PIXELS, batch_size: int = 64, progress: bool = True) -> FitData:
    """Check the dataset, decode it at the working resolution and give every image a class.

    ``label_column=None`` labels each image with the surrogate classifier's predicted class
    (label-agnostic); otherwise the column's values are the classes (label-consistent).
    """
    from uc_datasets.core.working_set import check_image_column, prepare_working_set

    t0 = time.perf_counter()
    check_image_column(ds, image_column)
    classifier = None
    if label_column is not None:
        values, classes, info = dataset_labels(ds, label_column)
        info = {"label_source": "dataset", **info}
    data, _ = prepare_working_set(ds, image_column, working_size=working_size, max_pixels=max_pixels,
                                  progress=progress)
    hw = data.hw
    items = [data[i] for i in range(len(data))]
    x = torch.stack([it[0] for it in items])
    grey = torch.tensor([bool(it[1]) for it in items], dtype=torch.bool)
    del items
    keys = list(data.content_keys())
    if label_column is None:
        if surrogate is None:
            raise LabelSourceError("label-agnostic mode (label_column=None) needs a surrogate classifier, e.g. "
                                   f"surrogate='{EFFICIENTNET_LITE0}'; or pass label_column for label-consistent mode.")
        classifier = surrogate if isinstance(surrogate, Surrogate) else load_classifier(
            surrogate, image_size=surrogate_image_size)
        classifier = classifier.to(device)
        pred = predict_classes(classifier, x, batch_size=batch_size, progress=progress)
        values = [int(v) for v in pred]
        classes = sorted(set(values))
        info = {"label_source": "surrogate", "surrogate": classifier.name}
    index = {c: i for i, c in enumerate(classes)}
    y = torch.as_tensor([index[v] for v in values], dtype=torch.long)
    counts = torch.bincount(y, minlength=len(classes)).tolist()
    info["class_counts"] = {str(c): n for c, n in zip(classes, counts)}
    source = "surrogate's predictions" if classifier is not None else f"column {label_column!r}"
    logger.info("labels from the %s: %d classes over %d images", source, len(classes), len(y))
    return FitData(x, grey, keys, y, classes, tuple(hw), classifier, info, time.perf_counter() - t0)


def keys_array(keys: Sequence[bytes]) -> np.ndarray:
    """(N, 16) uint8 array of content keys."""
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16) if keys else np.zeros((0, 16), np.uint8)


def _datasets_version() -> str:
    import datasets

    return datasets.__version__


def fit_metadata(ds: datasets.Dataset, data: FitData, *, seconds: dict, **stats) -> dict:
    """The metadata every baseline protector keeps (versions, label statistics, timings, stats)."""
    return {
        "labels": data.label_info,
        "stats": {"seconds": {"prepare": round(data.seconds, 3), **seconds}, **stats},
        "n_fit_images": len(ds),
        "fit_fingerprint": getattr(ds, "_fingerprint", None),
        "datasets_version": _datasets_version(),
        "torch_version": torch.__version__,
        "fitted_with": __version__,
    }


def surrogate_info(data: FitData) -> dict:
    """What identifies the label source (stored; checked when the classifier is reloaded)."""
    if data.classifier is None:
        return {"name": "none (dataset labels)", "kind": "none"}
    return vars(data.classifier.info())


class BaselineProtector(BaseProtector):
    """A fitted baseline (EMinN, EMaxN, AdvPoison, DeepConfuse): stored perturbations, one per class or per image.

    ``deltas`` is ``(P, 3, h, w)`` at the working resolution, within ``[-eps, eps]``. For
    sample-wise methods row ``p`` belongs to the image with content hash ``cache_keys[p]``;
    for class-wise methods row ``p`` is class ``config.classes[p]`` (and ``cache_keys`` /
    ``cache_rows`` remember the predicted class of each fit-set image in label-agnostic mode).

    Example:
        >>> prot = EMinN(steps=20).fit(ds)  # doctest: +SKIP
        >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
        >>> prot.save_pretrained("protector/")  # a secret: never publish it  # doctest: +SKIP
    """

    protector_type: ClassVar[str] = "baseline-perturbations"
    config_class: ClassVar[type[BaselineConfig]] = BaselineConfig
    cache_name: ClassVar[str] = "cache_rows"
    description: ClassVar[str] = "a baseline protector"
    surrogate_role: ClassVar[str] = "surrogate classifier"
    surrogate_use: ClassVar[str] = "predicted classes"

    def __init__(self, config: BaselineConfig, deltas: torch.Tensor, *, surrogate_info: dict,
                 image_column: str = "image", working_hw: Sequence[int] = (224, 224),
                 cache_keys: np.ndarray | None = None, cache_rows: np.ndarray | None = None,
                 metadata: dict | None = None, surrogate: Surrogate | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, use_cache: bool = True):
        self.label_column = config.label_column if (config.perturbation == "classwise"
                                                    and config.label_source == "dataset") else None
        super().__init__(config, deltas, surrogate_info=surrogate_info, image_column=image_column,
                         working_hw=working_hw, cache_keys=cache_keys, cache_values=cache_rows, metadata=metadata,
                         surrogate=surrogate, max_pixels=max_pixels, use_cache=use_cache, classes=config.classes)

    @property
    def cache_rows(self) -> np.ndarray:
        """The perturbation row of every fit-set image, by ``cache_keys`` (content hashes)."""
        return self.cache_values

    @property
    def n_rows(self) -> int:
        return int(self.deltas.shape[0])

    @property
    def needs_labels(self) -> bool:
        """Class-wise and label-consistent: the map callable reads ``label_column`` from each batch."""
        return self.config.perturbation == "classwise" and self.config.label_source == "dataset"

    def _check(self) -> None:
        c = self.config
        self._check_cache_range(self.n_rows, "row")
        if c.perturbation == "classwise" and self.n_rows != len(c.classes):
            raise ValueError("inconsistent protector: a class-wise protector needs one perturbation per class")
        if c.perturbation == "samplewise" and len(self.cache_keys) != self.n_rows:
            raise ValueError("inconsistent protector: a sample-wise protector needs one key per perturbation")

    @property
    def method(self) -> str:
        """The paper's name (``EMinN``, ``EMaxN``, ``AdvPoison``, ``SynPer``, ``DeepConfuse``); ``-classwise`` for class-wise EMinN."""
        name = METHOD_NAMES.get(self.config.method, self.config.method)
        classwise_eminn = self.config.method == "eminn" and self.config.perturbation == "classwise"
        return f"{name}-classwise" if classwise_eminn else name

    # ------------------------------------------------------------------ map interface
    def rows_for(self, images: Sequence[Image.Image], *, labels: Sequence[object] | None = None) -> np.ndarray:
        """The perturbation row of each supported-mode image (see the module's table)."""
        c = self.config
        if c.perturbation == "samplewise":
            rows = np.array([self._cache.get(content_key(img), -1) for img in images], dtype=np.int64)
            missing = np.flatnonzero(rows < 0)
            if len(missing):
                raise UnseenImageError(
                    f"{len(missing)} of {len(images)} image(s) in this batch (positions {missing[:10].tolist()}) "
                    f"were not in the dataset this sample-wise {self.method} protector was fitted on. Sample-wise "
                    "perturbations exist only for fitted images, found by a hash of their pixels (an edited, resized "
                    "or lossy re-encoded image is a new image). Refit on a dataset that includes them, or use a "
                    "class-wise method (eminn-classwise, synper) or UC, which protect unseen images."
                )
            return rows
        if c.label_source == "dataset":
            return self.label_rows(labels, len(images))
        rows = np.full(len(images), -1, dtype=np.int64)
        if self.use_cache and self._cache:
            for i, img in enumerate(images):
                rows[i] = self._cache.get(content_key(img), -1)
        todo = np.flatnonzero(rows < 0)
        if len(todo):
            x = torch.stack([working_tensor(images[i], self.working_hw) for i in todo])
            rows[todo] = predict_classes(self.classifier, x, batch_size=c.feature_batch_size,
                                         restrict_to=[int(v) for v in c.classes])
        return rows

    def perturbations_for(self, images: Sequence[Image.Image], *,
                          labels: Sequence[object] | None = None) -> list[torch.Tensor]:
        """The perturbation ``(3, h, w)`` of each image at the working resolution."""
        return [self.deltas[r] for r in self.rows_for(images, labels=labels)]

    def _load_surrogate(self, name: str) -> Surrogate:
        if self.config.label_source != "surrogate":
            raise RuntimeError("a label-consistent protector has no surrogate classifier")
        return load_classifier(name, image_size=self.config.surrogate_image_size)

    @property
    def classifier(self) -> Surrogate:
        """The label-agnostic surrogate classifier, loaded on first use and checked against the fitted weights."""
        return self.surrogate

    def _pickle_state(self) -> dict:
        return {**super()._pickle_state(), "label_column": self.label_column}

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(method={self.method}, perturbation={c.perturbation}, "
                f"labels={c.label_source}, n_perturbations={self.n_rows}, epsilon={c.epsilon_levels}/255, "
                f"working_hw={self.working_hw})")


def build_protector(cls: type[BaselineProtector], config: BaselineConfig, deltas: torch.Tensor, data: FitData, *,
                    ds: datasets.Dataset, image_column: str, seconds: dict, max_pixels: int, stats: dict,
                    tensors: dict | None = None) -> BaselineProtector:
    """Assemble the protector of a finished fit (keys, caches, metadata) for any baseline."""
    config.classes = list(data.classes)
    if config.perturbation == "samplewise":
        _, uniq = data.unique_rows()
        keys, rows = keys_array(uniq), np.arange(len(uniq), dtype=np.int64)
    elif config.label_source == "surrogate":
        row_of = {k: int(c) for k, c in zip(data.keys, data.y.tolist())}
        keys, rows = keys_array(list(row_of)), np.fromiter(row_of.values(), dtype=np.int64, count=len(row_of))
    else:
        keys, rows = None, None
    config.n_clusters = int(deltas.shape[0])
    meta = fit_metadata(ds, data, seconds=seconds, **stats)
    kwargs = dict(surrogate_info=surrogate_info(data), image_column=image_column, working_hw=data.hw,
                  cache_keys=keys, cache_rows=rows, metadata=meta, surrogate=data.classifier, max_pixels=max_pixels)
    return cls(config, deltas, **kwargs, **(tensors or {}))


def check_two_classes(data: FitData, method: str) -> None:
    """Model-based baselines need at least two classes to train a classifier on."""
    if len(data.classes) < 2:
        src = "the surrogate predicted" if data.classifier is not None else "the label column holds"
        raise LabelSourceError(f"{method} trains a classifier, but {src} a single class for every image "
                               f"({data.classes}); it needs at least two classes.")


def make_config(method: str, *, perturbation: str, label_column: str | None, epsilon: float,
                surrogate: str | Surrogate | None, surrogate_image_size: int | None, working_size: int, seed: int,
                params: dict) -> BaselineConfig:
    """The :class:`BaselineConfig` of a fit, validated before any work starts."""
    name = surrogate.name if isinstance(surrogate, Surrogate) else surrogate
    if label_column is not None and surrogate is not None and name != EFFICIENTNET_LITE0:
        logger.info("label-consistent mode: the surrogate %r is not used", name)
    return BaselineConfig(
        method=method, epsilon=float(epsilon), perturbation=perturbation,
        label_source="dataset" if label_column is not None else "surrogate", label_column=label_column,
        surrogate=None if label_column is not None else name, surrogate_image_size=surrogate_image_size,
        working_size=working_size, seed=seed, params=params,
    )


def start_fit(method: str, ds: datasets.Dataset, *, perturbation: str, params: dict, image_column: str,
              label_column: str | None, epsilon: float, surrogate: str | Surrogate | None,
              surrogate_image_size: int | None, working_size: int, seed: int, device: str | torch.device | None,
              max_pixels: int, progress: bool) -> tuple[BaselineConfig, torch.device, FitData]:
    """The opening every baseline fit shares: validated config, device, seeding, prepared data."""
    cfg = make_config(method, perturbation=perturbation, label_column=label_column, epsilon=epsilon,
                      surrogate=surrogate, surrogate_image_size=surrogate_image_size, working_size=working_size,
                      seed=seed, params=params)
    device = torch.device(device) if device is not None else default_device()
    from accelerate.utils import set_seed

    set_seed(seed)
    data = prepare_fit(ds, image_column=image_column, label_column=label_column, surrogate=surrogate,
                       surrogate_image_size=surrogate_image_size, working_size=working_size, device=device,
                       max_pixels=max_pixels, progress=progress)
    return cfg, device, data


class BaselineMethod(BaseMethod):
    """What the baselines' fits share: the opening (config, device, seed, labelled data) and the protector.

    A subclass sets ``name``, ``names``, ``config_class`` (a :class:`BaselineSettings`) and
    ``perturbation`` and implements :meth:`fit` on :meth:`start` and :meth:`finish`.
    """

    config: BaselineSettings
    default_surrogate: ClassVar[str | None] = EFFICIENTNET_LITE0
    perturbation: ClassVar[str] = "samplewise"
    protector_class: ClassVar[type[BaselineProtector]] = BaselineProtector
    #: ``BaselineConfig.method`` of the protectors (the registry key unless variants share one).
    method_key: ClassVar[str] = ""

    def start(self, ds: datasets.Dataset, *, image_column: str, label_column: str | None,
              params: dict) -> tuple[BaselineConfig, torch.device, FitData]:
        """The validated record, the device (seeded) and the prepared data of a fit."""
        c = self.config
        return start_fit(self.method_key or self.name, ds, perturbation=self.perturbation, params=params,
                         image_column=image_column, label_column=label_column, epsilon=c.epsilon,
                         surrogate=self._surrogate or c.surrogate, surrogate_image_size=c.surrogate_image_size,
                         working_size=c.working_size, seed=c.seed, device=self.device, max_pixels=self.max_pixels,
                         progress=self.progress)

    def finish(self, cfg: BaselineConfig, deltas: torch.Tensor, data: FitData, *, ds: datasets.Dataset,
               image_column: str, seconds: dict, stats: dict, tensors: dict | None = None) -> BaselineProtector:
        """The protector of a finished fit (keys, caches, metadata)."""
        return build_protector(self.protector_class, cfg, deltas, data, ds=ds, image_column=image_column,
                               seconds=seconds, max_pixels=self.max_pixels, stats=stats, tensors=tensors)
