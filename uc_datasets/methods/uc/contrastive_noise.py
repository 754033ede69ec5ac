"""A sample-wise contrastive residual: per-image noise that makes SimCLR's task trivial.

The unsupervised hacker of this project trains SimCLR on the scraped images and probes the
encoder with a few clean labels. A class-wise key does not stop it: two views of one image
share their class's pattern, but so do the views of every other image of the class, so the
pattern does not tell the positive pair from the negatives. Contrastive poisoning (He et al.,
ICLR 2023) crafts *sample-wise* error-minimising noise against the contrastive loss instead:
each image's own noise survives the augmentations and identifies its two views, the NT-Xent
loss falls without the encoder learning the images, and a linear probe on its features
learns little.

:func:`craft_contrastive_noise` is that min-min loop, shrunk to this project's scale: it
alternates ``train_steps`` SGD steps of a small SimCLR encoder (the attacker's own recipe,
:func:`~uc_datasets.evaluation.simclr.simclr_augment` and
:func:`~uc_datasets.evaluation.simclr.nt_xent_loss`) with one pass of signed-gradient steps on
every image's residual through two fresh views. It is added on top of a class-wise
perturbation (the ``base`` of each image), inside the budget the class-wise part leaves
(``UCConfig.contrastive_share`` of epsilon).

The residual exists only for the images the protector was fitted on (found at map time by
the content hash of their pixels); an image outside the fit set gets its class-wise part only.
It is stored losslessly as whole uint8 levels (``int8``, one row per fit image at the working
resolution: N x 3 x h x w bytes).

Example:
    >>> x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    >>> cfg = ContrastiveNoiseConfig(rounds=1, train_steps=1, batch_size=8, model_width=0.0625)
    >>> r = craft_contrastive_noise(x, torch.zeros(16, dtype=torch.bool), None, 4 / 255, cfg, progress=False)
    >>> r.dtype, r.shape, int(r.abs().max()) <= 4
    (torch.int8, torch.Size([16, 3, 8, 8]), True)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from uc_datasets.core.imaging import perturb
from uc_datasets.methods.uc.keyed_noise import MinMinConfig

logger = logging.getLogger(__name__)

__all__ = ["ContrastiveNoiseConfig", "craft_contrastive_noise"]


@dataclass(frozen=True)
class ContrastiveNoiseConfig(MinMinConfig):
    """Settings of the contrastive min-min crafting: those of
    :class:`~uc_datasets.methods.uc.keyed_noise.MinMinConfig` against a small SimCLR encoder
    (``model`` as its backbone), and the NT-Xent ``temperature``; ``step_size`` is a fraction of
    the residual's budget."""

    rounds: int = 10
    step_size: float = 0.2
    lr: float = 0.06
    temperature: float = 0.5

    what: ClassVar[str] = "contrastive"

    def validate(self) -> None:
        """Raise ``ValueError`` naming a bad setting and its range."""
        super().validate()
        if self.batch_size < 2:
            raise ValueError("contrastive batch_size must be >= 2: NT-Xent needs negatives in the batch.")
        if not self.temperature > 0:
            raise ValueError(f"contrastive temperature must be positive, got {self.temperature!r}.")


def craft_contrastive_noise(x: torch.Tensor, grey: torch.Tensor, base: torch.Tensor | None, budget: float,
                            cfg: ContrastiveNoiseConfig, *, seed: int = 0, device: torch.device | str = "cpu",
                            progress: bool = True, stats: dict | None = None) -> torch.Tensor:
    """One residual per image, ``int8`` levels ``(N, 3, h, w)`` within ``round(budget * 255)``.

    Args:
        x: uint8 images ``(N, 3, h, w)``; grey: ``(N,)`` bool (grey images see the luminance).
        base: the class-wise perturbation of every image ``(N, 3, h, w)`` (float, as added), or None.
        budget: the residual's L-inf bound (a fraction of 1, whole levels).
        cfg: the crafting settings.
        stats: filled with the NT-Xent loss of each round's noise pass.
    """
    from tqdm.auto import tqdm

    from uc_datasets.core.augment import simclr_augment
    from uc_datasets.core.contrastive import SimCLREncoder, nt_xent_loss

    cfg.validate()
    device = torch.device(device)
    levels = round(float(budget) * 255)
    if levels < 1:
        raise ValueError(f"the contrastive residual needs at least one level of budget, got {budget * 255:.2f}/255.")
    eps = levels / 255
    grey = torch.as_tensor(grey, dtype=torch.bool)
    n, hw = len(x), tuple(x.shape[-2:])
    if n < 2:
        raise ValueError("the contrastive residual needs at least two images (NT-Xent contrasts them).")
    base = torch.zeros(n, 3, *hw) if base is None else base.float()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SimCLREncoder(cfg.model, width=cfg.model_width, image_size=min(hw), seed=seed).to(device)
    bs = min(cfg.batch_size, n)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr * bs / 256, momentum=0.9, weight_decay=5e-4)
    residual = torch.zeros(n, 3, *hw)
    step = cfg.step_size * eps
    losses: list[float] = []

    def views(idx: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xb = perturb(x[idx].to(device).float().div_(255), base[idx].to(device) + r, grey[idx].to(device))
        return simclr_augment(xb), simclr_augment(xb)

    bar = tqdm(range(cfg.rounds), desc="contrastive noise", disable=not progress)
    for _ in bar:
        net.train().requires_grad_(True)
        for _ in range(cfg.train_steps):
            idx = torch.randperm(n, generator=gen)[:bs]
            v1, v2 = views(idx, residual[idx].to(device))
            loss = nt_xent_loss(net(v1), net(v2), cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.requires_grad_(False)
        total, count = 0.0, 0
        for idx in torch.randperm(n, generator=gen).split(bs):
            if len(idx) < 2:
                continue
            r = residual[idx].to(device)
            for _ in range(cfg.noise_steps):
                r.requires_grad_(True)
                v1, v2 = views(idx, r)
                loss = nt_xent_loss(net(v1), net(v2), cfg.temperature)
                (grad,) = torch.autograd.grad(loss, r)
                r = (r.detach() - step * grad.sign()).clamp_(-eps, eps)
            residual[idx] = r.detach().cpu()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
        losses.append(round(total / max(count, 1), 4))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        logger.info("contrastive round %d: NT-Xent of the crafting encoder %.4f", len(losses), losses[-1])
    bar.close()
    if stats is not None:
        stats["contrastive_losses"] = losses
    if not math.isfinite(float(residual.abs().max())):
        raise ValueError("the contrastive residual holds NaN values; lower the step size.")
    return torch.round(residual * 255).clamp_(-levels, levels).to(torch.int8)
