"""The estimator: ``UnlearnableClusters(...).fit(ds)`` returns a fitted :class:`UCProtector`."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import datasets
import numpy as np
import torch
from accelerate.utils import set_seed

from uc_datasets._version import __version__
from uc_datasets.core.imaging import DEFAULT_MAX_PIXELS
from uc_datasets.core.method import BaseMethod
from uc_datasets.core.protector import default_device
from uc_datasets.core.surrogates import Surrogate, load_surrogate
from uc_datasets.core.working_set import check_image_column, prepare_working_set
from uc_datasets.methods.uc.config import DEFAULT_SURROGATE, UCConfig
from uc_datasets.methods.uc.fit import fit_clusters, needs_surrogate
from uc_datasets.methods.uc.protector import UCProtector, uc_method_name

logger = logging.getLogger(__name__)

#: The ``surrogate_info`` of a protector fitted without features (its keys are the classes).
NO_SURROGATE = {"name": "none (keys are the dataset's classes)", "kind": "none"}


class UnlearnableClusters(BaseMethod):
    """Unlearnable Clusters (Zhang et al., CVPR 2023), label-agnostic unlearnable examples.

    Clusters the images in a frozen surrogate's embedding space, trains one bounded
    perturbation per cluster that pulls its images toward a wrong cluster's centre, and
    returns a protector that adds them. Every keyword is a :class:`UCConfig` field or a run
    option (``device``, ``max_pixels``, ``progress``, ``channels_last``); ``surrogate`` may be a
    loaded :class:`~uc_datasets.core.surrogates.Surrogate`, and ``config`` a whole :class:`UCConfig`.

    Example:
        >>> uc = UnlearnableClusters(surrogate="openai/clip-vit-base-patch32", n_clusters=10,
        ...                          epsilon=16 / 255, epochs=50, seed=0)  # doctest: +SKIP
        >>> uc_protect = uc.fit(ds, image_column="image")  # doctest: +SKIP
        >>> protected = ds.map(uc_protect, batched=True)  # doctest: +SKIP
    """

    name: ClassVar[str] = "uc"
    names: ClassVar[tuple[str, ...]] = tuple(uc_method_name(clip=clip, label_aware=aware)
                                             for aware in (False, True) for clip in (False, True))
    config: UCConfig
    config_class: ClassVar[type[UCConfig]] = UCConfig
    distributed: ClassVar[bool] = True
    default_surrogate: ClassVar[str | None] = DEFAULT_SURROGATE
    run_options: ClassVar[tuple[str, ...]] = ("device", "max_pixels", "progress", "channels_last")
    fit_options: ClassVar[tuple[str, ...]] = ("class_names", "accelerator", "output_dir", "resume", "num_workers")

    def __init__(self, config: UCConfig | None = None, *, device: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool | None = None, channels_last: bool = False,
                 **settings: Any) -> None:
        super().__init__(config, device=device, max_pixels=max_pixels, progress=progress, **settings)
        self.device = torch.device(device) if device else default_device()
        self.channels_last = channels_last

    def load_surrogate(self) -> Surrogate:
        """The surrogate this estimator fits with (loaded once)."""
        if self._surrogate is None:
            self._surrogate = load_surrogate(self.config.surrogate, image_size=self.config.surrogate_image_size)
            if self.channels_last and self._surrogate.kind not in ("clip", "siglip", "vit", "deit", "dinov2"):
                self._surrogate.use_channels_last()
        return self._surrogate.to(self.device)

    def fit(self, ds: datasets.Dataset, image_column: str = "image", *, label_column: str | None = None,
            class_names: Sequence[str] | None = None, accelerator=None, output_dir: str | None = None,
            resume: bool = False, num_workers: int = 0) -> UCProtector:
        """Fit on every image of ``ds[image_column]`` and return the protector.

        Args:
            ds: the images to protect (a ``datasets.Dataset``).
            image_column: the image column.
            label_column: label-aware mode: the keys (clusters) are nested inside the classes of
                this column, ``clusters_per_class`` per class, so that every relabelling that is
                a function of the class coarsens the key. The map then needs this column too.
                None (default) is the paper's label-free mode (or ``config.label_column``).
            class_names: one name per distinct class (sorted order), for coarser key levels
                built from class names; a ``ClassLabel`` column or string labels give them.
            accelerator: an ``accelerate.Accelerator`` to fit data-parallel over its
                processes (``recipes/protect.py`` makes one); None for a single process.
            output_dir: where to cache features/clusters and checkpoint every epoch.
            resume: continue from the newest checkpoint in ``output_dir``.
            num_workers: DataLoader workers for decoding (useful on GPU machines).
        """
        cfg = dataclasses.replace(self.config)  # the fit's own copy: label-aware mode changes n_clusters
        check_image_column(ds, image_column)
        if label_column is not None:
            cfg.label_column = label_column
            cfg.validate()
        classes, class_values, names = (None, None, None)
        if cfg.label_aware:
            classes, class_values, names = class_indices(ds, cfg.label_column, class_names)
            cfg.n_clusters = max(2, len(class_values) * cfg.clusters_per_class)  # refined to the real count by the fit
            if len(class_values) < 2:
                raise ValueError(f"label column {cfg.label_column!r} holds a single class; label-aware keys need at "
                                 "least two classes (or use label_column=None).")
            warn_small_classes(classes, class_values, names, cfg.clusters_per_class)
            drop_unusable_levels(cfg, len(class_values), "classes")
            if cfg.levels and (cfg.level_source == "class-names" or (cfg.level_source == "auto" and names)):
                from uc_datasets.core.class_names import check_encoder

                check_encoder(cfg.name_encoder, option="name_encoder")  # before any work, not after the features
        elif cfg.clusters_per_class != 1:
            raise ValueError(f"clusters_per_class={cfg.clusters_per_class} makes clusters inside each class, which "
                             "needs label-aware mode: pass label_column=... to fit, or leave clusters_per_class=1 "
                             "(label-free mode has n_clusters clusters in all).")
        elif len(ds) < cfg.n_clusters:
            raise ValueError(f"{len(ds)} images cannot make n_clusters={cfg.n_clusters} clusters; "
                             "use fewer clusters or more images.")
        if not cfg.label_aware:
            drop_unusable_levels(cfg, cfg.n_clusters, "clusters")
        set_seed(cfg.seed)
        show = self.progress and (accelerator is None or accelerator.is_main_process)
        sizes: Counter = Counter()

        def check_sizes(found: Counter) -> None:
            sizes.update(found)
            check_period(cfg, found)

        data, n_grey = prepare_working_set(ds, image_column, working_size=cfg.working_size,
                                           max_pixels=self.max_pixels, progress=show, check_sizes=check_sizes)
        warn_resampled(cfg, sizes, data.hw)
        if accelerator is not None:
            self.device = accelerator.device
        surrogate = self.load_surrogate() if needs_surrogate(cfg, names) else None
        if surrogate is None:
            logger.info("the keys are the %d classes of %r and pattern=%r needs no features: the surrogate %r is "
                        "not loaded, at fit or at map time", len(class_values), cfg.label_column, cfg.pattern,
                        cfg.surrogate)
        result = fit_clusters(surrogate, data, cfg, device=self.device, accelerator=accelerator,
                              output_dir=output_dir, resume=resume, num_workers=num_workers, progress=show,
                              classes=classes, class_names=names, any_grey=n_grey > 0)
        cfg = dataclasses.replace(cfg, n_clusters=int(result.centres.shape[0]))
        keys = np.frombuffer(b"".join(data.content_keys()), dtype=np.uint8).reshape(-1, 16)
        metadata = {
            "loss_curves": result.loss_curves,
            "stats": result.stats,
            "n_fit_images": len(ds),
            "fit_fingerprint": getattr(ds, "_fingerprint", None),
            "datasets_version": datasets.__version__,
            "torch_version": torch.__version__,
            "fitted_with": __version__,
            "key_levels": result.key_levels,
            "class_names": names,
            # the ClassLabel names the classes had, checked at map time (BaseProtector.check_class_names)
            "label_names": label_names(ds, cfg.label_column, class_values) if cfg.label_aware else None,
        }
        return UCProtector(cfg, result.deltas, result.centres, result.permutation,
                           surrogate_info=vars(surrogate.info()) if surrogate is not None else NO_SURROGATE,
                           image_column=image_column, working_hw=data.hw,
                           cache_keys=keys, cache_clusters=result.labels, metadata=metadata,
                           surrogate=surrogate, max_pixels=self.max_pixels, classes=class_values,
                           cluster_class=result.cluster_class, transform=result.transform,
                           sample_residual=result.sample_residual)


def drop_unusable_levels(cfg: UCConfig, n_keys: int, what: str) -> None:
    """Leave out of ``cfg.levels`` (in place) each level with as many groups as there are keys or
    more (it would group nothing: on 3 classes, ``levels=(5, 2)`` is ``(2,)``), with a warning; a
    ``level_shares`` written for the dropped levels is refused instead.

    Example:
        >>> cfg = UCConfig(pattern="block", levels=(5, 2), label_column="label")
        >>> drop_unusable_levels(cfg, 3, "classes"); cfg.levels
        (2,)
    """
    kept = tuple(n for n in cfg.levels if n < n_keys)
    if kept == tuple(cfg.levels):
        return
    if cfg.level_shares is not None:
        raise ValueError(f"levels={cfg.levels} need fewer groups than the {n_keys} {what}, and level_shares="
                         f"{cfg.level_shares} were written for them; give levels below {n_keys} and their shares.")
    logger.warning("levels=%s: a level needs fewer groups than the %d %s; using levels=%s", cfg.levels, n_keys, what,
                   kept)
    cfg.levels = kept


def class_indices(ds: datasets.Dataset, label_column: str,
                  class_names: Sequence[str] | None = None) -> tuple[np.ndarray, list, list[str] | None]:
    """Class index of every row, the sorted distinct class values, and their names if known.

    Names come from ``class_names`` (one per distinct class, in sorted order), a ``ClassLabel``
    feature, or the values themselves when they are strings.

    Example:
        >>> ds = datasets.Dataset.from_dict({"label": ["dog", "cat", "dog"]})
        >>> idx, values, names = class_indices(ds, "label")
        >>> idx.tolist(), values, names
        ([1, 0, 1], ['cat', 'dog'], ['cat', 'dog'])
    """
    from uc_datasets.core.labels import dataset_labels

    values, classes, info = dataset_labels(ds, label_column)
    index = {c: i for i, c in enumerate(classes)}
    idx = np.array([index[v] for v in values], dtype=np.int64)
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != len(classes):
            raise ValueError(f"class_names has {len(names)} names for the {len(classes)} distinct classes of "
                             f"{label_column!r}; give one name per class, in sorted class order.")
        own = [info["class_names"][int(c)] for c in classes] if "class_names" in info else None
        if own is not None and own != names:
            logger.warning("class_names %s override the names of the ClassLabel column %r, %s: the coarser key "
                           "levels follow the names you gave.", names[:10], label_column, own[:10])
    elif "class_names" in info:
        names = [info["class_names"][int(c)] for c in classes]
    elif all(isinstance(c, str) for c in classes):
        names = list(classes)
    else:
        names = None
    return idx, list(classes), names


def label_names(ds: datasets.Dataset, label_column: str, classes: Sequence[object]) -> list[str] | None:
    """The ``ClassLabel`` name of each class of ``label_column`` (None when the column is not a ``ClassLabel``).

    Example:
        >>> feats = datasets.Features({"label": datasets.ClassLabel(names=["cat", "dog"])})
        >>> label_names(datasets.Dataset.from_dict({"label": [1, 0]}, features=feats), "label", [0, 1])
        ['cat', 'dog']
    """
    feature = ds.features[label_column]
    if not isinstance(feature, datasets.ClassLabel):
        return None
    return [feature.int2str(int(c)) for c in classes]


def warn_small_classes(rows: np.ndarray, classes: Sequence[object], names: Sequence[str] | None,
                       clusters_per_class: int) -> None:
    """Warn about the classes with fewer images than ``clusters_per_class`` (they get one cluster per image).

    Example:
        >>> warn_small_classes(np.array([0, 0, 1]), [0, 1], None, 1)  # every class holds one cluster
    """
    counts = np.bincount(rows, minlength=len(classes))
    small = [(names[i] if names else classes[i], int(n)) for i, n in enumerate(counts) if n < clusters_per_class]
    if small:
        logger.warning("clusters_per_class=%d, but %d class(es) have fewer images and get one cluster per image: "
                       "%s. Use clusters_per_class <= %d to give every class the same number.", clusters_per_class,
                       len(small), ", ".join(f"{c!r} ({n})" for c, n in small[:10]), int(counts.min()))


def check_period(cfg: UCConfig, sizes: Counter) -> None:
    """Refuse a tile period or block size larger than the smallest image: the tile would be cropped and
    no longer periodic (a block would cover the whole image).

    Example:
        >>> check_period(UCConfig(pattern="tile", period=4), Counter({(28, 28): 10}))
    """
    if not cfg.family.uses_period or not sizes:
        return
    h, w = min(sizes, key=min)
    if cfg.period > min(h, w):
        raise ValueError(f"period={cfg.period} is larger than the smallest image ({w}x{h} pixels): pattern="
                         f"{cfg.pattern!r} would be cropped to the image and no longer repeat. Use period <= "
                         f"{min(h, w)} (default 4).")


def warn_resampled(cfg: UCConfig, sizes: Counter, working_hw: tuple[int, int]) -> None:
    """Warn when a family's perturbations will be resampled to images of other sizes than the
    working resolution, which lowers their amplitude (drawn and periodic families tile instead).

    Example:
        >>> warn_resampled(UCConfig(pattern="block"), Counter({(28, 28): 5, (27, 27): 5}), (224, 224))
    """
    if len(sizes) <= 1 or cfg.family.keeps_amplitude():
        return
    other = sum(n for hw, n in sizes.items() if tuple(hw) != tuple(working_hw))
    logger.warning("%d of %d images are not %dx%d, the working resolution of this mixed-size set: pattern=%r's "
                   "perturbations are resampled to each image, which lowers their amplitude below epsilon where "
                   "the image is smaller (verify reports the mean change in levels). Resize the images to one "
                   "size first, or use a drawn family (pattern='block', 'tile', ...), which keeps the full bound "
                   "at every size.", other, sum(sizes.values()), working_hw[1], working_hw[0], cfg.pattern)
