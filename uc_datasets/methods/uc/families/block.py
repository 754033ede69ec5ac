"""``pattern="block"``: a random ``+-eps`` grid of ``period x period``-pixel blocks per key (Yu et al., KDD 2022)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from uc_datasets.methods.uc.families.drawn import DrawnFamily
from uc_datasets.methods.uc.patterns import block_patterns

__all__ = ["Block"]


class Block(DrawnFamily):
    """Coarse ``+-1`` blocks of ``period`` pixels of the image: low-frequency, so JPEG and small
    shifts disturb them less. At map time the grid is tiled, never resampled, so a block is
    ``period`` pixels of every image, whatever its size.

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> b = Block(UCConfig(pattern="block", period=2)).draw(1, (4, 4), channels=1, seed=0)
        >>> bool((b[0, 0, :2, :2] == b[0, 0, 0, 0]).all())
        True
    """

    name: ClassVar[str] = "block"
    uses_period: ClassVar[bool] = True

    def draw(self, n_keys: int, hw: Sequence[int], *, channels: int, seed: int) -> torch.Tensor:
        return block_patterns(n_keys, hw, block=self.cfg.period, channels=channels, seed=seed)
