"""Why a protection acts when it does: the gradient a fresh victim receives from the perturbation
against the real features', and the step at which a protected victim's curve leaves the clean one.

A victim learns from the gradient of its first steps. On protected images ``x + delta`` that
gradient is the clean images' gradient (the real features) plus what the perturbation changes;
:func:`gradient_at_init` measures both at initialisation, over fresh victims and batches, with
the victims' own augmentation applied to both sides alike. :func:`departure_step` reads a
step-resolved pair of curves (``reporting`` rows) for the first step from which the protected
victim stays below the clean one.

Example:
    >>> departure_step([10, 20, 30], [0.3, 0.6, 0.7], [0.3, 0.4, 0.5])
    20
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uc_datasets.core.augment import augment_batch
from uc_datasets.core.models import build_victim

__all__ = ["departure_step", "gradient_at_init"]


def departure_step(steps: Sequence[int], clean: Sequence[float], protected: Sequence[float], *,
                   margin: float = 0.05) -> int | None:
    """The first evaluated step from which the protected victim's accuracy stays more than
    ``margin`` below the clean victim's at every later point (None if it never does).

    Example:
        >>> departure_step([1, 2, 3, 4], [0.2, 0.5, 0.6, 0.7], [0.2, 0.3, 0.58, 0.4])  # back within 0.05 at 3
        4
    """
    if not (len(steps) == len(clean) == len(protected)):
        raise ValueError(f"one accuracy per step: {len(steps)} steps, {len(clean)} clean, {len(protected)} protected")
    below = [c - p > margin for c, p in zip(clean, protected)]
    for i in range(len(below)):
        if all(below[i:]):
            return int(steps[i])
    return None


def _flat_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return torch.cat([g.flatten() for g in grads])


def gradient_at_init(clean: torch.Tensor, protected: torch.Tensor, labels: torch.Tensor, n_classes: int, *,
                     victim: str = "resnet18", width: float = 0.125, seeds: Sequence[int] = (0, 1, 2),
                     batches: int = 4, batch_size: int = 64, augment: str = "crop") -> dict:
    """The gradient fresh victims receive at initialisation, from the real features and from the
    perturbation: over ``seeds`` (fresh weights) and ``batches`` batches each (the same images and
    the same crop + flip on both sides), the clean gradient ``g_c`` (of ``clean`` images) and the
    protected one ``g_p``; the perturbation's part is ``g_p - g_c``.

    Returns means over batches of ``clean_norm`` (``|g_c|``), ``perturbation_norm`` (``|g_p - g_c|``),
    ``ratio`` (their quotient: how loud the perturbation is against the features), ``cos_clean``
    (cosine of ``g_p`` with ``g_c``: 1 = the protected step learns what a clean step learns, < 0 =
    it unlearns it) and ``cos_perturbation`` (cosine of ``g_p - g_c`` with ``g_c``).

    Example:
        >>> x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
        >>> r = gradient_at_init(x, x, torch.arange(16) % 2, 2, seeds=[0], batches=1, batch_size=8)
        >>> round(r["ratio"], 6), round(r["cos_clean"], 4)
        (0.0, 1.0)
    """
    if clean.shape != protected.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and protected {tuple(protected.shape)} must match row by row")
    out: dict[str, list[float]] = {k: [] for k in ("clean_norm", "perturbation_norm", "ratio", "cos_clean",
                                                    "cos_perturbation")}
    labels = torch.as_tensor(labels, dtype=torch.long)
    for seed in seeds:
        model = build_victim(victim, n_classes, width=width, image_size=int(clean.shape[-1]), seed=seed)
        model.train()
        gen = torch.Generator().manual_seed(seed)
        for b in range(batches):
            idx = torch.randint(0, len(labels), (batch_size,), generator=gen)
            both = torch.cat([clean[idx], protected[idx]]).float() / 255
            torch.manual_seed(seed * 1000 + b)
            # one augmentation draw for the pair: the same crop and flip of each image on both sides
            view = augment_batch(torch.cat([both[:batch_size], both[batch_size:]], dim=1), augment)
            xc, xp = view[:, :3], view[:, 3:]
            g_c = _flat_grad(model, xc, labels[idx])
            g_p = _flat_grad(model, xp, labels[idx])
            diff = g_p - g_c
            out["clean_norm"].append(float(g_c.norm()))
            out["perturbation_norm"].append(float(diff.norm()))
            out["ratio"].append(float(diff.norm() / g_c.norm().clamp(min=1e-12)))
            out["cos_clean"].append(float(F.cosine_similarity(g_p, g_c, dim=0)))
            out["cos_perturbation"].append(float(F.cosine_similarity(diff, g_c, dim=0)) if diff.norm() > 0 else 0.0)
    return {k: float(np.mean(v)) for k, v in out.items()} | {"n_batches": len(out["ratio"])}
