"""``pattern="ar"``: an autoregressive texture per key (Sandoval-Segura et al., NeurIPS 2022)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from uc_datasets.methods.uc.families.drawn import DrawnFamily
from uc_datasets.methods.uc.patterns import ar_patterns

__all__ = ["AR"]


class AR(DrawnFamily):
    """Each key has its own causal 3x3 AR coefficients; a stationary texture, so a crop (or the
    tiled copy at another image size) is another sample of it.

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> AR(UCConfig(pattern="ar")).draw(2, (6, 6), channels=1, seed=0).shape
        torch.Size([2, 1, 6, 6])
    """

    name: ClassVar[str] = "ar"

    def draw(self, n_keys: int, hw: Sequence[int], *, channels: int, seed: int) -> torch.Tensor:
        return ar_patterns(n_keys, hw, channels=channels, seed=seed)
