"""SynPer: synthetic, linearly separable perturbations (Yu et al., "Availability Attacks Create Shortcuts", KDD 2022).

No model is trained. Each class ``k`` gets a random centre ``mu_k ~ N(0, I)`` in a small space
of ``3 x grid x grid`` values; each image of class ``k`` gets the point
``mu_k + sample_std * z`` (``z ~ N(0, I)``, drawn from a generator seeded by the image's
content hash and the fit seed, so it is the same at every map and for every copy), which is
duplicated into blocks (nearest-neighbour upsampling) to the working resolution and scaled so
that its largest value is ``epsilon``. Distinct class centres in 192 dimensions make the
perturbations linearly separable by class: a linear model can fit the labels from the noise
alone, which is the shortcut a victim learns instead of the images.

Our settings (Yu et al.'s exact values were not checked here): ``grid=8`` (8x8 blocks a
channel), ``sample_std=1.0`` (each image's point as far from its centre as the centres are from
the origin; ``0`` makes the perturbation purely class-wise), per-image L-inf scaling to
epsilon = 16/255.

The perturbation of an image is a function of its class and its pixels, so class-wise rules
apply at map time: label-consistent protectors read the label column; label-agnostic ones
use the cached, or else freshly predicted, class of the surrogate classifier.

Example:
    >>> from uc_datasets.methods.synper import SynPer
    >>> prot = SynPer().fit(ds, label_column="label")  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import datasets
import torch
import torch.nn.functional as F
from PIL import Image

from uc_datasets.core.imaging import content_key
from uc_datasets.methods.baseline import BaselineMethod, BaselineProtector, BaselineSettings, check_int

logger = logging.getLogger(__name__)

__all__ = ["SynPer", "SynPerConfig", "SynPerProtector", "synthesize"]

_GOLDEN = 0x9E3779B97F4A7C15  # mixes the fit seed into the per-image seed


def synthesize(centre: torch.Tensor, key: bytes, *, seed: int, sample_std: float, epsilon: float,
               hw: tuple[int, int]) -> torch.Tensor:
    """The SynPer perturbation ``(3, h, w)`` of an image with content hash ``key`` in the class of ``centre``.

    Args:
        centre: the class centre ``(3, grid, grid)``.
        key: the image's :func:`~uc_datasets.core.imaging.content_key`.
        seed: the fit seed; sample_std: spread of the image's point around the centre.
        epsilon: L-inf bound; hw: working resolution.

    Example:
        >>> d = synthesize(torch.randn(3, 4, 4), bytes(16), seed=0, sample_std=1.0, epsilon=8 / 255, hw=(8, 8))
        >>> d.shape, round(float(d.abs().max()) * 255, 4)
        (torch.Size([3, 8, 8]), 8.0)
    """
    point = centre.float()
    if sample_std > 0:
        s = (int.from_bytes(key[:8], "little") ^ (seed * _GOLDEN)) % 2**64
        z = torch.randn(centre.shape, generator=torch.Generator().manual_seed(s))
        point = point + sample_std * z
    up = F.interpolate(point.unsqueeze(0), size=tuple(hw), mode="nearest").squeeze(0)
    peak = up.abs().max()
    return up * (epsilon / peak) if peak > 0 else up


class SynPerProtector(BaselineProtector):
    """A fitted SynPer protector: class centres ``(n_classes, 3, grid, grid)``; perturbations made at map time.

    Example:
        >>> prot = SynPer().fit(ds, label_column="label")  # doctest: +SKIP
        >>> prot.perturbations_for(images, labels=labels)[0].shape  # doctest: +SKIP
        torch.Size([3, 32, 32])
    """

    protector_type: ClassVar[str] = "baseline-synper"

    @property
    def centres(self) -> torch.Tensor:
        """The class centres ``(n_classes, 3, grid, grid)`` (stored in place of deltas)."""
        return self.deltas

    def _check(self) -> None:
        c = self.config
        if c.perturbation != "classwise" or self.n_rows != len(c.classes):
            raise ValueError("inconsistent protector: SynPer needs one centre per class")
        self._check_cache_range(self.n_rows, "row")

    def _check_perturbations(self) -> None:
        if not bool(torch.isfinite(self.deltas).all()):
            raise ValueError("inconsistent protector: the class centres hold NaN or infinite values")

    def perturbations_for(self, images: Sequence[Image.Image], *,
                          labels: Sequence[object] | None = None) -> list[torch.Tensor]:
        """The perturbation ``(3, h, w)`` of each image from its class centre and its pixels."""
        c = self.config
        rows = self.rows_for(images, labels=labels)
        return [synthesize(self.deltas[r], content_key(img), seed=c.seed, sample_std=c.params["sample_std"],
                           epsilon=c.epsilon, hw=self.working_hw) for img, r in zip(images, rows)]


@dataclass
class SynPerConfig(BaselineSettings):
    """SynPer's settings: ``grid``, the side of the low-dimensional point (``3 x grid x grid``
    values, duplicated into blocks), and ``sample_std``, the spread of each image's point around
    its class centre (0: class-wise only).

    Example:
        >>> SynPerConfig(grid=4).sample_std
        1.0
        >>> SynPerConfig(sample_std=-1)
        Traceback (most recent call last):
        ValueError: sample_std must be a number >= 0, got -1.
    """

    grid: int = 8
    sample_std: float = 1.0

    def _check_params(self) -> None:
        super()._check_params()
        check_int(grid=self.grid)
        if isinstance(self.sample_std, bool) or not isinstance(self.sample_std, (int, float)) or not self.sample_std >= 0:
            raise ValueError(f"sample_std must be a number >= 0, got {self.sample_std!r}.")


class SynPer(BaselineMethod):
    """Draw SynPer class centres (no model is trained); the perturbations are made at map time.

    Example:
        >>> SynPer(grid=4).config.grid
        4
    """

    name: ClassVar[str] = "synper"
    names: ClassVar[tuple[str, ...]] = ("SynPer",)
    config: SynPerConfig
    config_class: ClassVar[type[SynPerConfig]] = SynPerConfig
    perturbation: ClassVar[str] = "classwise"
    protector_class: ClassVar[type[SynPerProtector]] = SynPerProtector

    def fit(self, ds: datasets.Dataset, *, image_column: str = "image",
            label_column: str | None = None) -> SynPerProtector:
        """Draw the class centres for ``ds`` (``label_column``: label-consistent mode); a :class:`SynPerProtector`."""
        c = self.config
        params = {"grid": c.grid, "sample_std": float(c.sample_std), "scaling": "per-image L-inf to epsilon"}
        cfg, _, data = self.start(ds, image_column=image_column, label_column=label_column, params=params)
        t0 = time.perf_counter()
        centres = torch.randn(len(data.classes), 3, c.grid, c.grid, generator=torch.Generator().manual_seed(c.seed))
        if min(data.hw) < c.grid:
            logger.warning("grid=%d is larger than the working resolution %s; blocks are subsampled.", c.grid,
                           data.hw)
        return self.finish(cfg, centres, data, ds=ds, image_column=image_column,
                           seconds={"attack": round(time.perf_counter() - t0, 3)},
                           stats={"n_classes": len(data.classes)})
