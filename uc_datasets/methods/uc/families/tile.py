"""``pattern="tile"``: a random ``+-eps`` tile of ``period x period`` pixels per key, repeated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from uc_datasets.methods.uc.families.drawn import DrawnFamily
from uc_datasets.methods.uc.patterns import tile_patterns

__all__ = ["Tile"]


class Tile(DrawnFamily):
    """Periodic ``+-1`` tiles: any shift by a multiple of the period leaves them unchanged, any
    other shift gives another phase of the same tile (docs/design.md §1, 2026-11-28).

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> Tile(UCConfig(pattern="tile", period=2)).draw(2, (4, 4), channels=1, seed=0).unique().tolist()
        [-1.0, 1.0]
    """

    name: ClassVar[str] = "tile"
    uses_period: ClassVar[bool] = True
    periodic: ClassVar[bool] = True

    def draw(self, n_keys: int, hw: Sequence[int], *, channels: int, seed: int) -> torch.Tensor:
        return tile_patterns(n_keys, hw, period=self.cfg.period, channels=channels, seed=seed)
