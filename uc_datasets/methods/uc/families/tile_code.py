"""``pattern="tile-code"``: tiles chosen as a code, far apart under every cyclic shift and flip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from uc_datasets.methods.uc.families.tile import Tile
from uc_datasets.methods.uc.patterns import code_tiles, tile_to

__all__ = ["TileCode"]


class TileCode(Tile):
    """Like :class:`~uc_datasets.methods.uc.families.tile.Tile`, but the tiles are a greedy
    max-min code (:func:`~uc_datasets.methods.uc.patterns.code_tiles`): no key's tile correlates
    strongly with a shift or flip of another key's.

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> TileCode(UCConfig(pattern="tile-code")).draw(3, (8, 8), channels=1, seed=0).shape
        torch.Size([3, 1, 8, 8])
    """

    name: ClassVar[str] = "tile-code"

    def draw(self, n_keys: int, hw: Sequence[int], *, channels: int, seed: int) -> torch.Tensor:
        return tile_to(code_tiles(n_keys, period=self.cfg.period, channels=channels, seed=seed), hw).contiguous()
