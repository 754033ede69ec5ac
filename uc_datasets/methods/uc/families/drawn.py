"""Drawn (model-free) families: a seeded pattern per key, no training, no surrogate.

:class:`DrawnFamily` owns what they share: one pattern per key plus one per group of every
coarser key level (``UCConfig.levels``), each with its share of epsilon, and the map-time rule
that keeps a pattern's amplitude and pixel scale at every image's size (the working-size
pattern is tiled from the top-left corner, never resampled). A subclass implements :meth:`draw`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from uc_datasets.methods.uc.families.base import Family, FamilyInputs, FamilyOutput

__all__ = ["DrawnFamily"]


class DrawnFamily(Family):
    """A model-free family: :meth:`draw` gives ``n_keys`` patterns in ``[-1, 1]``; :meth:`fit` sums the levels.

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> from uc_datasets.methods.uc.families import get_family
        >>> fam = get_family("tile")(UCConfig(pattern="tile", period=2, levels=(2,)))
        >>> d = fam.combine([np.arange(4), np.array([0, 0, 1, 1])], (4, 4), channels=1)
        >>> d.shape, bool(d.abs().max() <= 1)
        (torch.Size([4, 1, 4, 4]), True)
    """

    supports_levels: ClassVar[bool] = True
    supports_contrastive: ClassVar[bool] = True
    size_rule: ClassVar[str] = "tile"

    def draw(self, n_keys: int, hw: Sequence[int], *, channels: int, seed: int) -> torch.Tensor:
        """``n_keys`` patterns ``(n_keys, channels, h, w)`` in ``[-1, 1]``, reproducible from ``seed``."""
        raise NotImplementedError

    def combine(self, key_groups: Sequence[np.ndarray], hw: Sequence[int], *, channels: int) -> torch.Tensor:
        """``sum_l shares[l] * P_l[key_groups[l][k]]`` over the levels, in ``[-1, 1]``: ``(p, C, h, w)``.

        ``key_groups[0]`` is the identity (one pattern per key), then the group of every key at
        each coarser level; level ``l`` draws its patterns from seed ``seed * 1000 + l``.
        """
        shares = self.cfg.shares
        if len(key_groups) != len(shares) or not key_groups:
            raise ValueError(f"{len(key_groups)} key levels for {len(shares)} shares of epsilon: give one share per level")
        total = None
        for level, (groups, share) in enumerate(zip(key_groups, shares)):
            groups = torch.as_tensor(np.asarray(groups), dtype=torch.long)
            pats = self.draw(int(groups.max()) + 1, hw, channels=channels, seed=self.cfg.seed * 1_000 + level)
            part = share * pats[groups]
            total = part if total is None else total + part
        return total.clamp(-1.0, 1.0)

    def fit(self, inputs: FamilyInputs) -> FamilyOutput:
        p, hw, eps = inputs.n_keys, inputs.data.hw, inputs.epsilon
        pats = self.combine([np.arange(p), *inputs.levels], hw, channels=inputs.channels)
        return FamilyOutput((eps * pats).expand(p, 3, *hw).contiguous().clamp(-eps, eps), stats={"train_seconds": 0.0})
