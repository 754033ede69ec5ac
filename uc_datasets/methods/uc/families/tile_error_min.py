"""``pattern="tile+error-min"``: the keyed tile at ``tile_share`` of eps plus an error-minimising residual."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from uc_datasets.methods.uc.families.base import FamilyInputs
from uc_datasets.methods.uc.families.error_min import ErrorMin
from uc_datasets.methods.uc.families.tile import Tile

__all__ = ["TileErrorMin"]


class TileErrorMin(ErrorMin):
    """:class:`~uc_datasets.methods.uc.families.error_min.ErrorMin` crafted as a residual on top of
    the keyed tiles (the tile takes ``tile_share`` of the budget, levels included).

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> TileErrorMin(UCConfig(pattern="tile+error-min")).uses_period
        True
    """

    name: ClassVar[str] = "tile+error-min"
    uses_period: ClassVar[bool] = True

    def base(self, inputs: FamilyInputs) -> torch.Tensor:
        eps = self.cfg.tile_share * inputs.epsilon
        pats = Tile(self.cfg).combine([np.arange(inputs.n_keys), *inputs.levels], inputs.data.hw, channels=inputs.channels)
        return (eps * pats).expand(inputs.n_keys, 3, *inputs.data.hw).contiguous().clamp(-eps, eps)
