"""EMaxN: error-maximising noise on a trained classifier (sample-wise).

A classifier is trained on the clean images, then every image gets the untargeted PGD
perturbation that *maximises* its cross-entropy w.r.t. its label: ordinary adversarial
examples, used as training-time noise (the "error-maximising" comparison of Huang et al.
2021 and of the UC paper's Table 1).

Defaults: epsilon 16/255 (the paper's), 20 PGD steps of ``epsilon / 10`` (1.6/255) from a
uniform random start, on a ResNet-18 trained 30 epochs (SGD lr 0.1, momentum 0.9, weight
decay 5e-4, cosine, crop + flip). The number of classifier epochs is our choice.

Example:
    >>> from uc_datasets.methods.emaxn import EMaxN
    >>> prot = EMaxN().fit(ds)  # label-agnostic: ImageNet classes of efficientnet-lite0  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from uc_datasets.methods.pgd_poison import PGDPoison, PGDPoisonConfig

__all__ = ["EMaxN", "EMaxNConfig"]


@dataclass
class EMaxNConfig(PGDPoisonConfig):
    """EMaxN's settings: those of :class:`~uc_datasets.methods.pgd_poison.PGDPoisonConfig`, 20 PGD steps.

    Example:
        >>> EMaxNConfig().steps
        20
    """

    steps: int = 20


class EMaxN(PGDPoison):
    """EMaxN: untargeted PGD that maximises the loss of the true class, sample-wise.

    Example:
        >>> EMaxN(epsilon=8 / 255).config.steps
        20
    """

    name: ClassVar[str] = "emaxn"
    names: ClassVar[tuple[str, ...]] = ("EMaxN",)
    config_class: ClassVar[type[EMaxNConfig]] = EMaxNConfig
    targeted: ClassVar[bool] = False
