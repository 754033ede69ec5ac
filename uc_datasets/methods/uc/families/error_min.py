"""``pattern="error-min"``: keyed error-minimising noise, one min-min perturbation per key."""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from uc_datasets.methods.uc.families.base import Family, FamilyInputs, FamilyOutput

__all__ = ["ErrorMin"]


class ErrorMin(Family):
    """Min-min noise per key, crafted against a small classifier trained from scratch on the keys
    (one head per coarser level of ``levels``), under the victims' crop + flip; settings in
    ``UCConfig.error_min`` (:class:`~uc_datasets.methods.uc.keyed_noise.KeyedNoiseConfig`).

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> ErrorMin(UCConfig(pattern="error-min")).needs_pixels
        True
    """

    name: ClassVar[str] = "error-min"
    supports_levels: ClassVar[bool] = True
    supports_contrastive: ClassVar[bool] = True
    needs_pixels: ClassVar[bool] = True

    def check(self) -> None:
        super().check()
        self.cfg.error_min_config.validate()

    def base(self, inputs: FamilyInputs) -> torch.Tensor | None:
        """The perturbation the noise is crafted on top of (None: from zero)."""
        return None

    def fit(self, inputs: FamilyInputs) -> FamilyOutput:
        from uc_datasets.methods.uc.keyed_noise import craft_keyed_noise

        x, is_grey = inputs.data.tensors()
        stats: dict = {}
        t0 = time.perf_counter()
        deltas = craft_keyed_noise(x, is_grey, torch.as_tensor(inputs.keys, dtype=torch.long), inputs.levels,
                                   inputs.epsilon, self.cfg.error_min_config, base=self.base(inputs), seed=self.cfg.seed,
                                   device=inputs.device, progress=inputs.progress, stats=stats)
        stats["train_seconds"] = time.perf_counter() - t0
        return FamilyOutput(deltas, stats=stats)
