"""Random-noise controls at a protector's budget: what a protection adds beyond its key structure.

One fixed pattern per key, added in uint8 levels as a protector adds its perturbations: per
image (independent draws), per protector cluster, or per true class (the label-keyed shortcut,
an upper bound that only works for the labels it was keyed to; docs/design.md §1).

Example:
    >>> import torch
    >>> x = torch.full((4, 3, 8, 8), 128, dtype=torch.uint8)
    >>> y = noise_control(x, [0, 0, 1, 1], 16 / 255, seed=0, kind="sign")
    >>> int((y.int() - x.int()).abs().max())
    16
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .comparison import ProtectedSets

__all__ = ["CONTROLS", "CONTROLS_N10", "add_noise_controls", "noise_control"]

#: Controls run under every labelling, and at the original labels only.
CONTROLS = ("sign-per-cluster", "sign-per-class")
CONTROLS_N10 = ("random-per-image", "random-per-cluster", "random-per-class")


def noise_control(clean: torch.Tensor, keys: Sequence[int] | np.ndarray, epsilon: float, seed: int,
                  kind: str = "uniform") -> torch.Tensor:
    """``clean + round(255 * pattern)`` in uint8 levels, one pattern per distinct key.

    ``kind="uniform"`` draws U(-eps, eps) per pixel, ``"sign"`` draws +-eps per pixel. Grey data
    (all channels equal) gets grey patterns, as a protector gives grey images the luminance of
    its delta. Returns uint8 images of ``clean``'s shape.
    """
    keys = torch.as_tensor(np.asarray(keys), dtype=torch.long)
    if keys.shape != (len(clean),):
        raise ValueError(f"noise_control needs one key per image: {len(clean)} images, keys of shape "
                         f"{tuple(keys.shape)}")
    n, c, h, w = clean.shape
    grey = bool((clean[:, 0] == clean[:, 1]).all() and (clean[:, 1] == clean[:, 2]).all())
    gen = torch.Generator().manual_seed(seed)
    shape = (int(keys.max()) + 1, 1 if grey else c, h, w)
    if kind == "uniform":
        patterns = (torch.rand(shape, generator=gen) * 2 - 1) * epsilon
    elif kind == "sign":
        patterns = (torch.randint(0, 2, shape, generator=gen) * 2 - 1) * epsilon
    else:
        raise ValueError(f"kind must be 'uniform' or 'sign', got {kind!r}")
    levels = torch.round(patterns * 255).to(torch.int16)
    out = (clean.to(torch.int16) + levels[keys]).clamp(0, 255).to(torch.uint8)
    if int((out.to(torch.int16) - clean.to(torch.int16)).abs().max()) > round(epsilon * 255):
        raise RuntimeError("a noise control exceeds epsilon")  # cannot happen; guards the control
    return out


def add_noise_controls(sets: ProtectedSets, clusters: Sequence[int] | np.ndarray, p: int, *, epsilon: float,
                       surrogate: str, seed: int = 0) -> None:
    """Add every control of :data:`CONTROLS_N10` and :data:`CONTROLS` to ``sets`` with its keys
    (``clusters``: the protector's cluster of every image, ``p`` clusters from ``surrogate``);
    ``seed`` redraws them."""
    n = len(sets.labels)
    keys = {"image": np.arange(n), "cluster": np.asarray(clusters), "class": sets.labels.numpy()}
    groups = {"image": n, "cluster": p, "class": int(sets.labels.max()) + 1}
    for i, method in enumerate(CONTROLS_N10 + CONTROLS):
        kind, key = method.split("-per-")
        images = noise_control(sets.clean, keys[key], epsilon, seed=1000 + i + 10_000 * seed,
                               kind="sign" if kind == "sign" else "uniform")
        sets.add(method, images, groups=None if key == "image" else keys[key], p=groups[key],
                 surrogate=surrogate if key == "cluster" else "none")
