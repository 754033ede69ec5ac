"""``pattern="generator"``: the paper's family, one generator per cluster trained against the surrogate."""

from __future__ import annotations

from typing import ClassVar

from uc_datasets.methods.uc.families.base import Family, FamilyInputs, FamilyOutput

__all__ = ["Generator"]


class Generator(Family):
    """The reference ResNet generator's output per cluster, trained with UC's loss so that the
    surrogate embeds each cluster's perturbed images at a wrong cluster's centre
    (:func:`~uc_datasets.methods.uc.training.train_perturbations`); ``augment_mode="shifts"``
    trains it under the victim's per-image shifts and flips.

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> Generator(UCConfig()).surrogate_loss
        True
    """

    name: ClassVar[str] = "generator"
    surrogate_loss: ClassVar[bool] = True

    def fit(self, inputs: FamilyInputs) -> FamilyOutput:
        from uc_datasets.methods.uc.training import train_perturbations

        deltas, curves, stats = train_perturbations(
            inputs.surrogate, inputs.data, inputs.keys, inputs.centres, inputs.permutation, self.cfg,
            device=inputs.device, accelerator=inputs.accelerator, checkpoint_root=inputs.checkpoint_root,
            resume=inputs.resume, num_workers=inputs.num_workers, progress=inputs.progress, periodic=self.periodic)
        return FamilyOutput(deltas, curves, stats)
