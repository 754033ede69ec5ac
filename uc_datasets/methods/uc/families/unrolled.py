"""``pattern="unrolled"``: keyed noise crafted against the first SGD steps of fresh models."""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import torch

from uc_datasets.methods.uc.families.base import Family, FamilyInputs, FamilyOutput

__all__ = ["Unrolled"]


class Unrolled(Family):
    """One perturbation per key that maximises the clean held-out loss of a fresh small CNN after
    ``horizon // 2 .. horizon`` SGD steps on the protected images, differentiated through those
    steps (:func:`~uc_datasets.methods.uc.unrolled_noise.craft_unrolled_noise`): a protection
    aimed at the early phase of training, where a hacker who stops early wins. Settings in
    ``UCConfig.options`` (:class:`~uc_datasets.methods.uc.unrolled_noise.UnrolledConfig`);
    ``init="class-mean"`` starts from the class-mean ``away`` keys.

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> Unrolled(UCConfig(pattern="unrolled", options={"rounds": 5})).settings.rounds
        5
    """

    name: ClassVar[str] = "unrolled"
    supports_levels: ClassVar[bool] = True
    supports_contrastive: ClassVar[bool] = True
    needs_pixels: ClassVar[bool] = True

    @property
    def settings(self):
        from uc_datasets.methods.uc.unrolled_noise import UnrolledConfig

        return UnrolledConfig.from_options(self.cfg.options)

    def check(self) -> None:
        self.settings  # validates the options

    def fit(self, inputs: FamilyInputs) -> FamilyOutput:
        from uc_datasets.methods.uc.families.class_mean import ClassMean, key_means
        from uc_datasets.methods.uc.unrolled_noise import craft_unrolled_noise

        cfg = self.settings
        x, grey = inputs.data.tensors()
        init = None
        if cfg.init == "class-mean":
            means = key_means(x, inputs.keys, inputs.n_keys, channels=inputs.channels)
            init = torch.sign(ClassMean(self.cfg).away(means)) * 0.9
        t0 = time.perf_counter()
        deltas, curve = craft_unrolled_noise(x, grey, torch.as_tensor(np.asarray(inputs.keys)), inputs.levels,
                                             inputs.epsilon, cfg, init=init, seed=self.cfg.seed,
                                             device=inputs.device, progress=inputs.progress)
        stats = {"train_seconds": time.perf_counter() - t0, "unrolled_held_out_loss": [round(v, 4) for v in curve]}
        return FamilyOutput(deltas, stats=stats)
