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
    >>> from uc_datasets.attacks import advpoison
    >>> prot = advpoison.fit(ds, steps=250)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import datasets
import torch

from ..imaging import DEFAULT_MAX_PIXELS
from ..protection.surrogates import EFFICIENTNET_LITE0, Surrogate
from ._adversarial import fit_adversarial
from .base import BaselineProtector

logger = logging.getLogger(__name__)

__all__ = ["fit"]


def fit(ds: datasets.Dataset, *, image_column: str = "image", label_column: str | None = None,
        epsilon: float = 16 / 255, steps: int = 250, step_size: float | None = None, random_start: bool = True,
        train_epochs: int = 30, model: str = "resnet18", model_width: float = 1.0, lr: float = 0.1,
        batch_size: int = 256, surrogate: str | Surrogate | None = EFFICIENTNET_LITE0,
        surrogate_image_size: int | None = None, working_size: int = 224, seed: int = 0,
        device: str | torch.device | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: bool = True) -> BaselineProtector:
    """Fit sample-wise class-targeted adversarial poisons on every image of ``ds[image_column]``.

    Args:
        ds, image_column: the dataset to protect and its image column.
        label_column: None for label-agnostic mode (classes predicted by ``surrogate``), or
            the label column for label-consistent mode.
        epsilon: L-inf bound in [0, 1] pixel units (16/255).
        steps, step_size: targeted PGD steps (250) and step (default ``epsilon / 10``).
        random_start: start PGD uniformly in the ball (True) or at zero.
        train_epochs: epochs of clean training of the classifier (30).
        model, model_width, lr, batch_size: the classifier, its SGD learning rate, batch size.
        surrogate, surrogate_image_size: label-agnostic classifier and its input size override.
        working_size, seed, device, max_pixels, progress: as for :func:`uc_datasets.attacks.eminn.fit`.

    Returns:
        A sample-wise :class:`~uc_datasets.attacks.base.BaselineProtector`, ``deltas`` ``(n_images, 3, h, w)``;
        ``metadata["stats"]["target_hit_rate"]`` is the share of images the classifier puts in their target class.

    Example:
        >>> prot = fit(ds, label_column="label")  # doctest: +SKIP
    """
    return fit_adversarial(
        "advpoison", ds, image_column=image_column, label_column=label_column, epsilon=epsilon, steps=steps,
        step_size=step_size, random_start=random_start, train_epochs=train_epochs, model=model,
        model_width=model_width, lr=lr, batch_size=batch_size, surrogate=surrogate,
        surrogate_image_size=surrogate_image_size, working_size=working_size, seed=seed, device=device,
        max_pixels=max_pixels, progress=progress, targeted=True,
    )
