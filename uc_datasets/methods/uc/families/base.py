"""What every perturbation family is: one class that turns keys into one perturbation per key.

A family (``UCConfig.pattern``) receives the working set, the key of every image (its cluster,
nested in its class in label-aware mode) and the coarser key levels, and returns the
perturbations ``(p, 3, h, w)`` at the working resolution. It says what it needs through class
attributes, so that the fit asks for nothing more (no surrogate pass for a family that needs no
features) and the map applies each perturbation at every image's own size without losing
its amplitude (:meth:`Family.at_size`).

Example:
    >>> from uc_datasets.methods.uc.families import get_family
    >>> get_family("block").surrogate_loss, get_family("generator").surrogate_loss
    (False, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from uc_datasets.core.imaging import resize_delta

if TYPE_CHECKING:
    from uc_datasets.core.surrogates import Surrogate
    from uc_datasets.core.working_set import WorkingSet
    from uc_datasets.methods.uc.config import UCConfig

__all__ = ["Family", "FamilyInputs", "FamilyOutput", "tile_at_size"]


@dataclass
class FamilyInputs:
    """What a family may read: the fit's settings, images and keys.

    ``epsilon`` is the family's own budget (less than ``cfg.epsilon`` when a contrastive
    residual takes a share). ``surrogate``, ``centres`` and ``permutation`` are set only for a
    family with :attr:`Family.surrogate_loss` (the others are fitted without a surrogate).
    """

    cfg: UCConfig
    data: WorkingSet
    keys: np.ndarray  # (N,) key (cluster) of every working-set image
    levels: list[np.ndarray]  # group of every key at each coarser level
    epsilon: float
    grey: bool  # some images are grey: draw grey patterns so that they get the full budget
    device: torch.device
    progress: bool = True
    classes: np.ndarray | None = None  # (N,) class of every image in label-aware mode
    surrogate: Surrogate | None = None
    centres: np.ndarray | None = None  # (p, D) raw-feature targets of the surrogate loss
    permutation: np.ndarray | None = None
    accelerator: Any = None
    checkpoint_root: Path | None = None
    resume: bool = False
    num_workers: int = 0

    @property
    def n_keys(self) -> int:
        return int(self.keys.max()) + 1 if len(self.keys) else 0

    @property
    def channels(self) -> int:
        """1 when some images are grey (one grey pattern for all channels), else 3."""
        return 1 if self.grey else 3


@dataclass
class FamilyOutput:
    """A family's result: perturbations ``(p, 3, h, w)`` in ``[-epsilon, epsilon]``, loss curves, stats."""

    deltas: torch.Tensor
    curves: list[list[float]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def tile_at_size(delta: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """``delta`` (3, h, w) repeated (or cropped) to ``hw``, from the top-left corner: every pixel
    keeps its value, so a pattern keeps its amplitude and its pixel scale at any image size.

    Example:
        >>> tile_at_size(torch.tensor([[[1.0, -1.0]]]), (1, 3)).tolist()
        [[[1.0, -1.0, 1.0]]]
    """
    h, w = int(hw[0]), int(hw[1])
    ph, pw = delta.shape[-2:]
    if (ph, pw) == (h, w):
        return delta
    return delta.repeat(1, -(-h // ph), -(-w // pw))[..., :h, :w]


class Family:
    """One perturbation family: settings read from a :class:`UCConfig`, :meth:`fit` and :meth:`at_size`.

    Subclasses set :attr:`name` and the capability flags, and implement :meth:`fit`. The
    registry (:mod:`uc_datasets.methods.uc.families`) lists every class.
    """

    #: ``UCConfig.pattern`` value.
    name: ClassVar[str] = ""
    #: Trained against the surrogate with UC's loss (needs features, centres and the training loop).
    surrogate_loss: ClassVar[bool] = False
    #: Reads ``UCConfig.period`` (the tile period or block size).
    uses_period: ClassVar[bool] = False
    #: Repeats with ``period``: the map tiles one period to each image.
    periodic: ClassVar[bool] = False
    #: Accepts coarser key levels (``UCConfig.levels``).
    supports_levels: ClassVar[bool] = False
    #: Accepts a sample-wise contrastive residual (``UCConfig.contrastive_share``).
    supports_contrastive: ClassVar[bool] = False
    #: Needs the working set's pixels in memory (crafted on the images).
    needs_pixels: ClassVar[bool] = False
    #: How :meth:`at_size` brings a working-size perturbation to an image's own size: ``"resample"``
    #: (convex, bilinear: stays within epsilon but loses amplitude where it shrinks a fine pattern),
    #: ``"tile"`` (the pattern repeated from the top-left corner: every value kept), ``"nearest"``
    #: (nearest neighbour: every value is one of the pattern's, for patterns that follow the image
    #: content's scale). Periodic families always repeat one period.
    size_rule: ClassVar[str] = "resample"

    def __init__(self, cfg: UCConfig):
        self.cfg = cfg

    #: The keys of ``UCConfig.options`` this family reads (none by default).
    option_names: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Raise ``ValueError`` with a fix for settings this family cannot use (called by ``UCConfig``)."""
        unknown = sorted(set(self.cfg.options) - set(self.option_names))
        if unknown:
            takes = f"it takes {list(self.option_names)}" if self.option_names else "it takes none"
            raise ValueError(f"unknown options {unknown} for pattern={self.name!r}: {takes}.")

    def fit(self, inputs: FamilyInputs) -> FamilyOutput:
        """The perturbations of every key (``(p, 3, h, w)``, within ``inputs.epsilon``)."""
        raise NotImplementedError

    def at_size(self, delta: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
        """The perturbation ``(3, h, w)`` of one key at an image's own size ``hw``, by :attr:`size_rule`.

        Example:
            >>> from uc_datasets.methods.uc.config import UCConfig
            >>> from uc_datasets.methods.uc.families import get_family
            >>> block = get_family("block")(UCConfig(pattern="block"))
            >>> block.at_size(torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]]), (3, 3)).tolist()
            [[[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]]]
        """
        h, w = int(hw[0]), int(hw[1])
        if self.periodic:
            k = min(self.cfg.period, *delta.shape[-2:])
            return tile_at_size(delta[:, :k, :k], (h, w))
        if self.size_rule == "tile":
            return tile_at_size(delta, (h, w))
        if self.size_rule == "nearest" and tuple(delta.shape[-2:]) != (h, w):
            return torch.nn.functional.interpolate(delta[None], size=(h, w), mode="nearest-exact")[0]
        return resize_delta(delta, (h, w))

    @classmethod
    def keeps_amplitude(cls) -> bool:
        """Whether every image gets the perturbation's full amplitude at its own size (no resampling)."""
        return cls.periodic or cls.size_rule != "resample"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
