"""Early-training crafting: keyed noise that maximises the clean validation loss of fresh models
after their first SGD steps on the protected data, differentiated through those steps.

A victim learns the real features in its first few dozen steps, before any shortcut takes
hold, so a hacker who stops early keeps most of a clean model (docs/design.md §4). This crafts
one perturbation per key against exactly that phase: every round draws a freshly initialised
small CNN, trains it for ``K`` SGD steps (momentum, the victims' crop + flip) on ``x + delta_k``
with the key labels, evaluates the cross-entropy of the trained model on a **held-out part of
the fit set** (clean images; never a test split), and ascends that loss with respect to the
perturbations through the unrolled steps (a meta-gradient, as MetaPoison does for targeted
poisons). ``K`` is drawn in ``[horizon // 2, horizon]`` per round, so the noise acts over the
whole early window; with coarser key levels each round trains on one level's labels, drawn at
random, so a relabelling that merges keys meets a noise crafted for it too.

The inner model is functional (plain tensors, batch-statistics normalisation), so that the
unrolled steps are differentiable without copying modules.

Example:
    >>> x = torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8)
    >>> keys = torch.arange(24) % 2
    >>> cfg = UnrolledConfig(rounds=1, horizon=2, batch_size=8, val_batch_size=4, width=4)
    >>> d, curve = craft_unrolled_noise(x, torch.zeros(24, dtype=torch.bool), keys, [], 8 / 255, cfg, progress=False)
    >>> d.shape, bool(d.abs().max() <= 8 / 255 + 1e-7), len(curve)
    (torch.Size([2, 3, 8, 8]), True, 1)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from uc_datasets.core.config import check_int, check_positive
from uc_datasets.core.imaging import LUMA_WEIGHTS, crop_at

logger = logging.getLogger(__name__)

__all__ = ["UnrolledConfig", "craft_unrolled_noise", "held_out_rows"]

INITS = ("zero", "class-mean")


@dataclass(frozen=True)
class UnrolledConfig:
    """Settings of :func:`craft_unrolled_noise` (``UCConfig.options`` of ``pattern="unrolled"``).

    ``rounds`` meta-steps (Adam, ``lr``, on ``w`` with ``delta = eps * tanh(w)``), each with a fresh
    CNN of ``width`` base channels trained ``horizon // 2 .. horizon`` steps of SGD (``inner_lr``,
    momentum ``momentum``, batches of ``batch_size``), the loss read on ``val_batch_size`` held-out
    images (``holdout`` of every key's images). ``init="class-mean"`` starts from the class-mean
    ``away`` pattern (:mod:`~uc_datasets.methods.uc.families.class_mean`), ``"zero"`` from nothing.

    Example:
        >>> UnrolledConfig(rounds=10).horizon
        20
    """

    rounds: int = 150
    horizon: int = 20
    batch_size: int = 64
    val_batch_size: int = 256
    lr: float = 0.1
    inner_lr: float = 0.1
    momentum: float = 0.9
    width: int = 16
    holdout: float = 0.2
    init: str = "zero"

    def validate(self) -> None:
        check_int("unrolled option ", rounds=self.rounds, horizon=self.horizon, batch_size=self.batch_size,
                  val_batch_size=self.val_batch_size, width=self.width)
        check_positive("unrolled option ", lr=self.lr, inner_lr=self.inner_lr)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"unrolled option momentum must be in [0, 1), got {self.momentum!r}.")
        if not 0 < self.holdout < 1:
            raise ValueError(f"unrolled option holdout is the share of each key's images held out as the clean "
                             f"validation of the crafting, in (0, 1); got {self.holdout!r}.")
        if self.init not in INITS:
            raise ValueError(f"unrolled option init must be one of {INITS}, got {self.init!r}.")

    @classmethod
    def from_options(cls, options: dict) -> UnrolledConfig:
        """The config of ``UCConfig.options`` (unknown keys are refused with the known ones)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown options {unknown} for pattern='unrolled'; choose from {sorted(known)}.")
        cfg = cls(**options)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


def held_out_rows(keys: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A boolean mask of the rows held out as the crafting's clean validation: ``share`` of every
    key's images (at least one, and at least one left to train on, where the key has two).

    Example:
        >>> int(held_out_rows(np.array([0, 0, 0, 0, 1, 1]), 0.5, 0).sum())
        3
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(keys), dtype=bool)
    for k in np.unique(keys):
        rows = rng.permutation(np.flatnonzero(keys == k))
        n = min(max(1, round(share * len(rows))), len(rows) - 1) if len(rows) > 1 else 0
        mask[rows[:n]] = True
    return mask


def _init_cnn(channels: int, n_out: Sequence[int], width: int, gen: torch.Generator,
              device: torch.device) -> list[torch.Tensor]:
    """He-initialised weights of a 3-conv CNN (width, 2 width, 4 width) with one linear head per level."""
    params = []
    for c_in, c_out in ((channels, width), (width, 2 * width), (2 * width, 4 * width)):
        params += [torch.randn(c_out, c_in, 3, 3, generator=gen) * math.sqrt(2 / (c_in * 9)), torch.zeros(c_out)]
    for n in n_out:
        params += [torch.randn(n, 4 * width, generator=gen) / math.sqrt(4 * width), torch.zeros(n)]
    return [p.to(device).requires_grad_(True) for p in params]


def _forward(params: Sequence[torch.Tensor], x: torch.Tensor, head: int) -> torch.Tensor:
    h = x
    for i in range(3):
        h = F.conv2d(h, params[2 * i], params[2 * i + 1], padding=1)
        h = F.relu(F.batch_norm(h, None, None, training=True))
        if i < 2 and min(h.shape[-2:]) >= 4:
            h = F.max_pool2d(h, 2)
    w, b = params[6 + 2 * head], params[7 + 2 * head]
    return h.mean((2, 3)) @ w.T + b


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The victims' crop (zero padding of 1/8 of the side) + horizontal flip, per image."""
    n, pad = x.shape[0], max(1, x.shape[-1] // 8)
    top = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    out = crop_at(x, pad, top, left)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)


def _as_input(x: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (B, 3, h, w) -> float in [0, 1] with ``channels`` channels (1: the luminance)."""
    x = x.float() / 255
    if channels == 1:
        x = (x * torch.tensor(LUMA_WEIGHTS, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x


def craft_unrolled_noise(x: torch.Tensor, grey: torch.Tensor, keys: torch.Tensor, levels: Sequence[np.ndarray],
                         epsilon: float, cfg: UnrolledConfig, *, init: torch.Tensor | None = None, seed: int = 0,
                         device: torch.device | str = "cpu", progress: bool = True) -> tuple[torch.Tensor, list[float]]:
    """One perturbation per key ``(p, 3, h, w)`` in ``[-epsilon, epsilon]``, and the held-out loss of every round.

    ``x`` are the fit images (uint8 ``(N, 3, h, w)``), ``keys`` their key, ``levels`` the group of
    every key at each coarser level. Grey data (any ``grey``) gets grey perturbations. ``init``
    (``(p, C, h, w)`` in ``[-1, 1]``, units of epsilon) is the starting point.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    keys = torch.as_tensor(keys, dtype=torch.long)
    p = int(keys.max()) + 1
    channels = 1 if bool(torch.as_tensor(grey).any()) else 3
    label_sets = [keys] + [torch.as_tensor(np.asarray(lv), dtype=torch.long)[keys] for lv in levels]
    sizes = [int(lab.max()) + 1 for lab in label_sets]
    hold = torch.from_numpy(held_out_rows(keys.numpy(), cfg.holdout, seed))
    train_rows, val_rows = torch.nonzero(~hold).flatten(), torch.nonzero(hold).flatten()
    gen = torch.Generator().manual_seed(int(seed) * 7_919 + 17)
    hw = tuple(x.shape[-2:])
    start = torch.zeros(p, channels, *hw) if init is None else init.reshape(p, -1, *hw)[:, :channels].clamp(-0.95, 0.95)
    w = torch.atanh(start).to(device).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.lr)
    curve: list[float] = []
    bar = tqdm(range(cfg.rounds), desc="crafting (unrolled steps)", disable=not progress)
    for _ in bar:
        delta = epsilon * torch.tanh(w)
        level = int(torch.randint(0, len(label_sets), (1,), generator=gen))
        labels = label_sets[level]
        params = _init_cnn(channels, sizes, cfg.width, gen, device)
        velocity = [torch.zeros_like(q) for q in params]
        k = int(torch.randint(max(1, cfg.horizon // 2), cfg.horizon + 1, (1,), generator=gen))
        for _ in range(k):
            rows = train_rows[torch.randint(0, len(train_rows), (cfg.batch_size,), generator=gen)]
            xb = (_as_input(x[rows].to(device), channels) + delta[keys[rows].to(device)]).clamp(0, 1)
            loss = F.cross_entropy(_forward(params, _augment(xb, gen), level), labels[rows].to(device))
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            grads = [torch.zeros_like(q) if g is None else g for q, g in zip(params, grads)]
            velocity = [cfg.momentum * v + g for v, g in zip(velocity, grads)]
            params = [q - cfg.inner_lr * v for q, v in zip(params, velocity)]
        rows = val_rows[torch.randint(0, len(val_rows), (cfg.val_batch_size,), generator=gen)]
        xv = _augment(_as_input(x[rows].to(device), channels), gen)
        val_loss = F.cross_entropy(_forward(params, xv, level), labels[rows].to(device))
        opt.zero_grad(set_to_none=True)
        (-val_loss).backward()
        opt.step()
        curve.append(float(val_loss.detach()))
        bar.set_postfix(held_out_loss=f"{curve[-1]:.3f}", steps=k)
    bar.close()
    deltas = (epsilon * torch.tanh(w.detach())).cpu().clamp(-epsilon, epsilon)
    logger.info("unrolled crafting: held-out loss of the first and last 10 rounds %.3f -> %.3f",
                float(np.mean(curve[:10])), float(np.mean(curve[-10:])))
    return deltas.expand(p, 3, *hw).contiguous(), curve
