"""The estimator: ``UnlearnableClusters(...).fit(ds)`` returns a fitted :class:`UCProtector`."""

from __future__ import annotations

import logging
import random

import datasets
import numpy as np
import torch

from . import __version__
from .config import UCConfig
from .data import WorkingSet, check_image_column, choose_working_hw, scan_sizes
from .fit import fit_clusters
from .imaging import DEFAULT_MAX_PIXELS
from .protector import UCProtector
from .surrogates import Surrogate, load_surrogate

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class UnlearnableClusters:
    """Unlearnable Clusters (Zhang et al., CVPR 2023), label-agnostic unlearnable examples.

    Clusters the images in a frozen surrogate's embedding space, trains one bounded
    perturbation per cluster that pulls its images toward a wrong cluster's centre, and
    returns a protector that adds them. Every keyword is a :class:`UCConfig` field.

    Example:
        >>> uc = UnlearnableClusters(surrogate="openai/clip-vit-base-patch32", n_clusters=10,
        ...                          epsilon=16 / 255, epochs=50, seed=0)  # doctest: +SKIP
        >>> uc_protect = uc.fit(ds, image_column="image")  # doctest: +SKIP
        >>> protected = ds.map(uc_protect, batched=True)  # doctest: +SKIP
    """

    def __init__(self, *, surrogate: str | Surrogate = "openai/clip-vit-base-patch32", device: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True, channels_last: bool = False,
                 **kwargs):
        self._surrogate = surrogate if isinstance(surrogate, Surrogate) else None
        name = surrogate.name if isinstance(surrogate, Surrogate) else surrogate
        self.config = UCConfig(surrogate=name, **kwargs)
        self.device = torch.device(device) if device else default_device()
        self.max_pixels = max_pixels
        self.progress = progress
        self.channels_last = channels_last

    def load_surrogate(self) -> Surrogate:
        """The surrogate this estimator fits with (loaded once)."""
        if self._surrogate is None:
            self._surrogate = load_surrogate(self.config.surrogate, image_size=self.config.surrogate_image_size)
            if self.channels_last and self._surrogate.kind not in ("clip", "siglip", "vit", "deit", "dinov2"):
                self._surrogate.use_channels_last()
        return self._surrogate.to(self.device)

    def fit(self, ds: datasets.Dataset, image_column: str = "image", *, accelerator=None,
            output_dir: str | None = None, resume: bool = False, num_workers: int = 0) -> UCProtector:
        """Fit on every image of ``ds[image_column]`` and return the protector.

        Args:
            ds: the images to protect (a ``datasets.Dataset``).
            image_column: the image column.
            accelerator: an ``accelerate.Accelerator`` to fit data-parallel over its
                processes (``recipes/protect.py`` makes one); None for a single process.
            output_dir: where to cache features/clusters and checkpoint every epoch.
            resume: continue from the newest checkpoint in ``output_dir``.
            num_workers: DataLoader workers for decoding (useful on GPU machines).
        """
        cfg = self.config
        check_image_column(ds, image_column)
        if len(ds) < cfg.n_clusters:
            raise ValueError(f"{len(ds)} images cannot make n_clusters={cfg.n_clusters} clusters; "
                             "use fewer clusters or more images.")
        seed_everything(cfg.seed)
        sizes, n_grey = scan_sizes(ds, image_column, max_pixels=self.max_pixels,
                                   progress=self.progress and (accelerator is None or accelerator.is_main_process))
        hw = choose_working_hw(sizes, cfg.working_size)
        logger.info("%d images, %d distinct sizes, %d grey; working resolution %s", len(ds), len(sizes), n_grey, hw)
        if accelerator is not None:
            self.device = accelerator.device
        surrogate = self.load_surrogate()
        show = self.progress and (accelerator is None or accelerator.is_main_process)
        data = WorkingSet(ds, image_column, hw, max_pixels=self.max_pixels, progress=show)
        result = fit_clusters(surrogate, data, cfg, device=self.device, accelerator=accelerator,
                              output_dir=output_dir, resume=resume, num_workers=num_workers, progress=show)
        keys = np.frombuffer(b"".join(data.content_keys()), dtype=np.uint8).reshape(-1, 16)
        metadata = {
            "loss_curves": result.loss_curves,
            "stats": result.stats,
            "n_fit_images": len(ds),
            "fit_fingerprint": getattr(ds, "_fingerprint", None),
            "datasets_version": datasets.__version__,
            "torch_version": torch.__version__,
            "fitted_with": __version__,
        }
        return UCProtector(cfg, result.deltas, result.centres, result.permutation,
                           surrogate_info=vars(surrogate.info()), image_column=image_column, working_hw=hw,
                           cache_keys=keys, cache_clusters=result.labels, metadata=metadata,
                           surrogate=surrogate, max_pixels=self.max_pixels)
