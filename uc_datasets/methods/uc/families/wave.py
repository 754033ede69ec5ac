"""``pattern="wave"``: a sum of three smooth cosines per key (wavelengths 8-32 px), pushed to eps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from uc_datasets.methods.uc.families.drawn import DrawnFamily
from uc_datasets.methods.uc.patterns import wave_patterns

__all__ = ["Wave"]


class Wave(DrawnFamily):
    """Low-frequency energy that JPEG-10 and blurring keep; the wavelengths are pixels of the
    image at every size (the working-size texture is tiled at map time).

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> w = Wave(UCConfig(pattern="wave")).draw(2, (16, 16), channels=1, seed=0)
        >>> w.shape, bool(w.abs().max() <= 1)
        (torch.Size([2, 1, 16, 16]), True)
    """

    name: ClassVar[str] = "wave"

    def draw(self, n_keys: int, hw: Sequence[int], *, channels: int, seed: int) -> torch.Tensor:
        return wave_patterns(n_keys, hw, channels=channels, seed=seed)
