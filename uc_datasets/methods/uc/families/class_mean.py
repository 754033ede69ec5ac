"""``pattern="class-mean"``: feature-aligned keys built from the data's own class means.

What a fresh victim learns first are the class-mean differences (the silhouettes, at full
contrast). This family spends the budget against them from the first step: every key's pattern
is ``eps * sign(target - mu_k)``, where ``mu_k`` is the mean image of the key's images (at the
working resolution, luminance for grey data) and the target is

* ``"away"`` (default): the mean of all images, so each key's perturbation removes what sets
  its images apart from the rest, for the keys and for every grouping of them;
* ``"derangement"``: the mean of another key (a seeded derangement), pushing each key's images
  toward a wrong key's silhouette;
* ``"nearest"``: the mean of the nearest other key (the most confusable one).

``block_share`` (default 0) mixes in the block keys (:mod:`~uc_datasets.methods.uc.families.block`)
at that share of the budget, a shortcut for the late phase of training. Settings go in
``UCConfig.options`` (``target``, ``block_share``). The pattern follows the images' content,
so it is brought to other image sizes by nearest neighbour (every value stays ``+-eps``).

Example:
    >>> from uc_datasets.methods.uc.config import UCConfig
    >>> ClassMean(UCConfig(pattern="class-mean", options={"target": "derangement"})).target
    'derangement'
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from uc_datasets.core.imaging import LUMA_WEIGHTS
from uc_datasets.methods.uc.families.base import Family, FamilyInputs, FamilyOutput

__all__ = ["ClassMean", "TARGETS", "key_means"]

TARGETS = ("away", "derangement", "nearest")


def key_means(x: torch.Tensor, keys: np.ndarray, n_keys: int, *, channels: int) -> torch.Tensor:
    """The mean image ``(n_keys, channels, h, w)`` in [0, 1] of every key's uint8 images ``x`` (N, 3, h, w);
    ``channels=1`` takes the luminance.

    Example:
        >>> x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 1, 1)
        >>> key_means(x, np.array([0, 1]), 2, channels=1).flatten().tolist()
        [0.0, 1.0]
    """
    k = torch.as_tensor(np.asarray(keys), dtype=torch.long)
    sums = torch.zeros(n_keys, 3, *x.shape[-2:], dtype=torch.float64)
    for s in range(0, len(x), 4096):  # in chunks: the float copy of a large set would not fit
        sums.index_add_(0, k[s : s + 4096], x[s : s + 4096].double() / 255)
    means = sums / torch.bincount(k, minlength=n_keys).clamp(min=1).view(-1, 1, 1, 1)
    if channels == 1:
        means = (means * torch.tensor(LUMA_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return means.float()


def _derangement(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(int(seed))
    while True:
        perm = torch.randperm(n, generator=gen)
        if n < 2 or not bool((perm == torch.arange(n)).any()):
            return perm


class ClassMean(Family):
    """Feature-aligned keys: ``eps * sign(target - mean image of the key)`` (see the module docstring)."""

    name: ClassVar[str] = "class-mean"
    needs_pixels: ClassVar[bool] = True
    size_rule: ClassVar[str] = "nearest"

    @property
    def target(self) -> str:
        return self.cfg.options.get("target", "away")

    @property
    def block_share(self) -> float:
        return float(self.cfg.options.get("block_share", 0.0))

    option_names: ClassVar[tuple[str, ...]] = ("target", "block_share")

    def check(self) -> None:
        super().check()
        if self.target not in TARGETS:
            raise ValueError(f"options['target'] must be one of {TARGETS}, got {self.target!r}.")
        share = self.cfg.options.get("block_share", 0.0)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise ValueError(f"options['block_share'] is the block keys' fraction of epsilon, in [0, 1); got {share!r}.")

    @staticmethod
    def away(means: torch.Tensor) -> torch.Tensor:
        """``mean of all keys - mean of the key`` ``(p, C, h, w)``: what sets each key apart, reversed."""
        return means.mean(0, keepdim=True) - means

    def directions(self, means: torch.Tensor) -> torch.Tensor:
        """``target - mean`` per key ``(p, C, h, w)``: what each key's images are pushed along."""
        p = means.shape[0]
        if self.target == "away":
            return self.away(means)
        if self.target == "derangement":
            return means[_derangement(p, self.cfg.seed)] - means
        dist = torch.cdist(means.flatten(1).double(), means.flatten(1).double())
        dist.fill_diagonal_(float("inf"))
        return means[dist.argmin(1)] - means

    def fit(self, inputs: FamilyInputs) -> FamilyOutput:
        x, _ = inputs.data.tensors()
        p, hw, eps = inputs.n_keys, inputs.data.hw, inputs.epsilon
        means = key_means(x, inputs.keys, p, channels=inputs.channels)
        share = self.block_share
        pats = (1 - share) * torch.sign(self.directions(means))
        if share:
            from uc_datasets.methods.uc.families.block import Block

            pats = pats + share * Block(self.cfg).combine([np.arange(p), *inputs.levels], hw, channels=inputs.channels)
        deltas = (eps * pats).expand(p, 3, *hw).contiguous().clamp(-eps, eps)
        return FamilyOutput(deltas, stats={"train_seconds": 0.0, "mean_change_levels": float(deltas.abs().mean() * 255)})
