"""AdvPoison: class-targeted adversarial poisons (Fowl et al., "Adversarial Examples Make Strong Poisons", 2021).

A classifier is trained on the clean images; every image then gets the *targeted* PGD
perturbation that pushes it to the class ``(y + 1) mod n_classes`` (a fixed permutation of
the classes), sample-wise. A victim trained on these images learns the non-robust features
of the wrong class.

Defaults: epsilon 16/255 (the paper's), 250 PGD steps (Fowl et al.'s number) of
``epsilon / 10`` (1.6/255) from a uniform random start, on a ResNet-18 trained 30 epochs
(SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine, crop + flip). Not implemented from
Fowl et al.: random restarts and differentiable data augmentation during crafting.

Example:
    >>> from uc_datasets.methods.advpoison import AdvPoison
    >>> prot = AdvPoison().fit(ds, steps=250)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from uc_datasets.methods.pgd_poison import PGDPoison, PGDPoisonConfig

__all__ = ["AdvPoison", "AdvPoisonConfig"]


@dataclass
class AdvPoisonConfig(PGDPoisonConfig):
    """AdvPoison's settings: those of :class:`~uc_datasets.methods.pgd_poison.PGDPoisonConfig`, 250 PGD steps.

    Example:
        >>> AdvPoisonConfig().steps
        250
    """

    steps: int = 250


class AdvPoison(PGDPoison):
    """AdvPoison: targeted PGD toward the class (y + 1) mod n_classes, sample-wise.

    Example:
        >>> AdvPoison(epsilon=8 / 255).config.steps
        250
    """

    name: ClassVar[str] = "advpoison"
    names: ClassVar[tuple[str, ...]] = ("AdvPoison",)
    config_class: ClassVar[type[AdvPoisonConfig]] = AdvPoisonConfig
    targeted: ClassVar[bool] = True
