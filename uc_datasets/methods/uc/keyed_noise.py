"""Keyed error-minimising noise: one min-min perturbation per key, learned by a fresh model at once.

The label-aware families ``error-min`` and ``tile+error-min`` (``UCConfig.pattern``). Every key
(a class, or a cluster inside a class) gets one perturbation, crafted as class-wise
error-minimising noise (Huang et al., ICLR 2021) against the keys, with two changes that
target the hacker of this project:

* **under the victim's augmentation**: the crafting model trains on, and the noise is
  optimised through, a fresh random crop + flip of ``x + delta`` at every step (an expectation
  over the transformations a crop + flip victim applies), so the shortcut survives them;
* **every anticipated labelling at once**: the crafting model has one head per key level (the
  keys, then each coarser grouping of ``levels``), and the noise minimises the sum of their
  losses, so a relabelling that merges classes into groups still finds its shortcut.

The min-min loop alternates ``train_steps`` SGD steps of a small classifier (from scratch,
re-initialised every ``restart_every`` rounds so that the noise is easy for *fresh* models,
which is what a victim is) with one pass of signed-gradient steps on the shared perturbation of
each key, through the model in training mode (batch statistics, as a victim sees the
data while it learns it; the running statistics are left as they are). The hybrid ``tile+error-min`` starts from the keyed tiles at ``tile_share`` of
epsilon and crafts the residual inside the rest of the budget.

Example:
    >>> x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    >>> keys = torch.arange(16) % 2
    >>> cfg = KeyedNoiseConfig(rounds=1, train_steps=1, batch_size=8, model_width=0.0625)
    >>> d = craft_keyed_noise(x, torch.zeros(16, dtype=torch.bool), keys, [], 8 / 255, cfg, progress=False)
    >>> d.shape, bool(d.abs().max() <= 8 / 255 + 1e-7)
    (torch.Size([2, 3, 8, 8]), True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from uc_datasets.core.config import check_int, check_positive
from uc_datasets.core.imaging import perturb

logger = logging.getLogger(__name__)

__all__ = ["KeyedNoiseConfig", "MinMinConfig", "craft_keyed_noise", "keyed_loss"]


@dataclass(frozen=True)
class MinMinConfig:
    """The settings every min-min crafting loop shares (saved in the protector's ``config.json``).

    ``rounds`` alternations of ``train_steps`` model steps and one noise pass of ``noise_steps``
    signed steps of ``step_size`` (a fraction of the budget) per batch of ``batch_size``; the
    model is a ``build_victim`` ``model`` of width ``model_width`` trained with SGD ``lr``.
    """

    rounds: int = 30
    train_steps: int = 10
    noise_steps: int = 1
    step_size: float = 0.1
    batch_size: int = 128
    model: str = "resnet18"
    model_width: float = 0.125
    lr: float = 0.1

    #: How errors name the loop, and what ``step_size`` is a fraction of.
    what: ClassVar[str] = "min-min"
    budget: ClassVar[str] = "the budget"

    def validate(self) -> None:
        """Raise ``ValueError`` naming a bad setting and its range."""
        check_int(f"{self.what} ", rounds=self.rounds, train_steps=self.train_steps, noise_steps=self.noise_steps,
                  batch_size=self.batch_size)
        if not (0 < self.step_size <= 1):
            raise ValueError(f"{self.what} step_size is a fraction of {self.budget} in (0, 1], got {self.step_size!r}.")
        check_positive(f"{self.what} ", model_width=self.model_width, lr=self.lr)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KeyedNoiseConfig(MinMinConfig):
    """Settings of the keyed min-min crafting: those of :class:`MinMinConfig`, and ``augment``,
    the victims' augmentation applied in both steps (``"crop"`` or ``"none"``); ``restart_every``
    rounds the model is re-initialised (0: never); ``stop_error``: stop once the model's error is below."""

    augment: str = "crop"
    restart_every: int = 0
    stop_error: float = 0.0

    what: ClassVar[str] = "error-min"
    budget: ClassVar[str] = "epsilon"

    def validate(self) -> None:
        """Raise ``ValueError`` naming a bad setting and its range."""
        super().validate()
        if self.augment not in ("none", "crop"):
            raise ValueError(f"error-min augment must be 'none' or 'crop', got {self.augment!r}.")
        if isinstance(self.restart_every, bool) or not isinstance(self.restart_every, int) or self.restart_every < 0:
            raise ValueError(f"error-min restart_every must be an integer >= 0 (0: never), got {self.restart_every!r}.")
        if not 0 <= self.stop_error < 1:
            raise ValueError(f"error-min stop_error must be in [0, 1), got {self.stop_error!r}.")


def _heads(keys: torch.Tensor, levels: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """The labels of every head: the key itself, then its group at each coarser level."""
    out = [keys]
    for groups in levels:
        out.append(torch.as_tensor(np.asarray(groups), dtype=torch.long)[keys])
    return out


def keyed_loss(logits: torch.Tensor, targets: Sequence[torch.Tensor], sizes: Sequence[int]) -> torch.Tensor:
    """Sum of the cross-entropies of each head (``logits`` split into ``sizes`` columns).

    Example:
        >>> keyed_loss(torch.zeros(2, 5), [torch.tensor([0, 1]), torch.tensor([1, 0])], [3, 2]).item() > 0
        True
    """
    loss = logits.new_zeros(())
    for part, y in zip(logits.split(list(sizes), dim=1), targets):
        loss = loss + F.cross_entropy(part, y)
    return loss


def _freeze_batch_norm(net: torch.nn.Module) -> list[tuple[torch.nn.Module, float | None]]:
    """Batch norm layers keep using batch statistics but stop updating their running ones."""
    saved = []
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    return saved


def _restore_batch_norm(net: torch.nn.Module, saved: list[tuple[torch.nn.Module, float | None]]) -> None:
    for m, momentum in saved:
        m.momentum = momentum


def craft_keyed_noise(x: torch.Tensor, grey: torch.Tensor, keys: torch.Tensor, levels: Sequence[np.ndarray],
                      epsilon: float, cfg: KeyedNoiseConfig, *, base: torch.Tensor | None = None,
                      seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
                      stats: dict | None = None) -> torch.Tensor:
    """One error-minimising perturbation per key, ``(p, 3, h, w)`` within ``[-epsilon, epsilon]``.

    Args:
        x: uint8 images ``(N, 3, h, w)``; grey: ``(N,)`` bool (grey images get the luminance).
        keys: ``(N,)`` key of every image in ``[0, p)``.
        levels: for each coarser level, the group of every key (``(p,)`` arrays); one head each.
        epsilon: the total L-inf budget.
        cfg: the crafting settings.
        base: a fixed perturbation per key ``(p, 3, h, w)`` (the hybrid's tile); the residual
            is crafted inside ``epsilon - max|base|`` and the sum is returned.
        stats: filled with the per-round training error of the crafting model (keys head).
    """
    from tqdm.auto import tqdm

    from uc_datasets.core.augment import augment_batch
    from uc_datasets.core.models import build_victim

    cfg.validate()
    device = torch.device(device)
    keys = torch.as_tensor(keys, dtype=torch.long)
    grey = torch.as_tensor(grey, dtype=torch.bool)
    p = int(keys.max()) + 1
    heads = _heads(keys, levels)
    sizes = [p] + [int(np.asarray(g).max()) + 1 for g in levels]
    hw = tuple(x.shape[-2:])
    base = torch.zeros(p, 3, *hw) if base is None else base.float()
    budget = float(epsilon) - float(base.abs().max())
    if budget <= 0:
        raise ValueError("the base pattern uses the whole budget: lower tile_share to leave room for the residual.")
    gen = torch.Generator().manual_seed(seed)
    delta = torch.zeros(p, 3, *hw)
    base_d = base.to(device)

    def new_model(round_: int):
        net = build_victim(cfg.model, sum(sizes), width=cfg.model_width, image_size=min(hw),
                           seed=seed * 7919 + round_).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
        return net, opt

    net, opt = new_model(0)
    step = cfg.step_size * budget
    n = len(x)
    errors: list[float] = []
    bar = tqdm(range(cfg.rounds), desc="error-min noise", disable=not progress)
    torch.manual_seed(seed)
    for r in bar:
        if cfg.restart_every and r and r % cfg.restart_every == 0:
            net, opt = new_model(r)
        net.train().requires_grad_(True)
        for _ in range(cfg.train_steps):
            idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
            d = (base_d[keys[idx]] + delta[keys[idx]].to(device))
            xb = augment_batch(perturb(x[idx].to(device).float().div_(255), d, grey[idx].to(device)),
                               cfg.augment)
            loss = keyed_loss(net(xb), [h[idx].to(device) for h in heads], sizes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        # the noise minimises the loss the model has while it trains (batch statistics, as a victim
        # in training sees it), without moving the running statistics
        net.requires_grad_(False)
        momenta = _freeze_batch_norm(net)
        wrong = 0
        for idx in torch.randperm(n, generator=gen).split(cfg.batch_size):
            xb0 = x[idx].to(device).float().div_(255)
            gb = grey[idx].to(device)
            kb = keys[idx].to(device)
            targets = [h[idx].to(device) for h in heads]
            dk = delta.to(device)
            for _ in range(cfg.noise_steps):
                dk.requires_grad_(True)
                logits = net(augment_batch(perturb(xb0, base_d[kb] + dk[kb], gb), cfg.augment))
                loss = keyed_loss(logits, targets, sizes)
                (grad,) = torch.autograd.grad(loss, dk)
                with torch.no_grad():
                    used = torch.zeros(p, dtype=torch.bool, device=device)
                    used[kb] = True
                    dk = torch.where(used.view(-1, 1, 1, 1), dk - step * grad.sign(), dk).clamp_(-budget, budget)
            wrong += int((logits[:, :p].argmax(1) != kb).sum())
            delta = dk.detach().cpu()
        _restore_batch_norm(net, momenta)
        err = wrong / n
        errors.append(round(err, 4))
        bar.set_postfix(error=f"{err:.3f}")
        logger.info("error-min round %d: training error of the crafting model %.4f", r + 1, err)
        if err < cfg.stop_error:
            break
    bar.close()
    if stats is not None:
        stats["error_min_errors"] = errors
    return (base + delta).clamp(-float(epsilon), float(epsilon))
