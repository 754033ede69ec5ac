"""UC's training loop: one perturbation per cluster, trained against the frozen surrogate.

``train_on="members"`` (the paper's Algorithm 1) trains every cluster's perturbation at
once: each batch applies to each image the perturbation of its own cluster, so one epoch
is one surrogate pass over the data, whatever the number of clusters. ``"all"`` (the
reference code) trains each cluster's perturbation on every image, p passes an epoch.
Used by the families with a surrogate loss (:mod:`uc_datasets.methods.uc.families.generator`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uc_datasets.core.imaging import crop_at, perturb
from uc_datasets.core.surrogates import Surrogate
from uc_datasets.core.working_set import WorkingSet
from uc_datasets.methods.uc.distributed import (
    is_main,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    shard_bounds,
    world,
)
from uc_datasets.methods.uc.generator import Perturbation
from uc_datasets.methods.uc.patterns import tile_to

if TYPE_CHECKING:
    from uc_datasets.methods.uc.config import UCConfig

logger = logging.getLogger(__name__)


def feature_loss(features: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample distance (B,) between surrogate features and target centres.

    ``kl`` is the reference's ``KLDiv(log_softmax(f), softmax(target))`` (features as
    logits), ``cosine`` is ``1 - cos``, ``mse`` the mean squared difference.

    Example:
        >>> f = torch.tensor([[1.0, 0.0]])
        >>> feature_loss(f, f, "cosine").item()
        0.0
    """
    if kind == "kl":
        return F.kl_div(F.log_softmax(features, dim=1), F.softmax(targets, dim=1), reduction="none").sum(1)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(features, targets, dim=1)
    if kind == "mse":
        return (features - targets).pow(2).mean(1)
    raise ValueError(f"unknown loss {kind!r}")


def augment_params(n: int, hw: tuple[int, int], gen: torch.Generator) -> tuple[int, int, torch.Tensor]:
    """Random crop offsets (for the whole batch) and per-image flips of :func:`augment`."""
    h, w = hw
    bh, bw = max(h, round(h * 256 / 224)), max(w, round(w * 256 / 224))
    top = int(torch.randint(0, bh - h + 1, (1,), generator=gen))
    left = int(torch.randint(0, bw - w + 1, (1,), generator=gen))
    return top, left, torch.rand(n, generator=gen) < 0.5


def augment(x: torch.Tensor, top: int, left: int, flip: torch.Tensor) -> torch.Tensor:
    """Reference-style train augmentation at any size: upscale by 256/224, crop back at
    ``(top, left)``, flip the images where ``flip``. Differentiable in ``x``."""
    h, w = x.shape[-2:]
    bh, bw = max(h, round(h * 256 / 224)), max(w, round(w * 256 / 224))
    if (bh, bw) != (h, w):
        x = F.interpolate(x, size=(bh, bw), mode="bilinear", align_corners=False)
        x = x[..., top : top + h, left : left + w]
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def shift_params(n: int, hw: tuple[int, int], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets (pad 1/8 of the side, like the victims' crop) and flips."""
    pad = max(1, hw[1] // 8)
    top = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    return top, left, torch.rand(n, generator=gen) < 0.5


def shift_augment(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Expectation over the victim's augmentation: zero-pad by 1/8 of the side, crop every image
    at its own offset, flip where ``flip``. Differentiable in ``x``.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> z = torch.ones(2, dtype=torch.long)  # offset = pad: no shift
        >>> torch.equal(shift_augment(x, z, z, torch.zeros(2, dtype=torch.bool)), x)
        True
    """
    out = crop_at(x, max(1, x.shape[-1] // 8), top, left)
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), out.flip(-1), out)


class SingleProcess:
    """The few ``Accelerator`` methods the loops use, for a plain single process."""

    num_processes, process_index, is_main_process = 1, 0, True

    def __init__(self, device: torch.device):
        self.device = device

    def prepare(self, *objs):
        return objs if len(objs) > 1 else objs[0]

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def autocast(self):
        return contextlib.nullcontext()

    def reduce(self, t: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return t

    def wait_for_everyone(self) -> None:
        pass


def loader(data: WorkingSet, batches: list[list[int]], *, num_workers: int, pin: bool):
    return torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=num_workers, pin_memory=pin)



class PerturbationBank(nn.Module):
    """All clusters' perturbations as one module: ``forward()`` -> deltas (p, 3, h, w).

    One module so that ``accelerator.prepare`` wraps it once for data parallelism.
    """

    def __init__(self, hw: tuple[int, int], cfg: UCConfig, *, periodic: bool = False):
        super().__init__()
        self.hw = tuple(hw)
        # periodic: each generator makes one period x period tile that is repeated over the
        # image, so the perturbation is periodic by construction (pattern="periodic-generator").
        self.periodic = periodic
        gen_hw = (min(cfg.period, hw[0]), min(cfg.period, hw[1])) if self.periodic else hw
        self.perts = nn.ModuleList(
            Perturbation(gen_hw, cfg.epsilon, cfg.parametrization, ngf=cfg.ngf, n_blocks=cfg.n_blocks,
                         seed=cfg.seed * 100_003 + k)
            for k in range(cfg.n_clusters)
        )

    def forward(self) -> torch.Tensor:
        # Always float32, even when accelerate wraps this forward in autocast for mixed
        # precision: a bf16 clamp at epsilon can round above epsilon.
        device_type = next(self.parameters()).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            out = torch.stack([p() for p in self.perts]).float()
        return tile_to(out, self.hw) if self.periodic else out


def epoch_batches(n: int, batch_size: int, ws: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Global batches of an epoch: a permutation seeded by (seed, epoch), cut in ``batch_size``.

    A last batch smaller than the number of processes is dropped (each process needs one image).
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).numpy()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= ws]


def run_key(cfg: UCConfig, n: int, hw: tuple[int, int], classes: np.ndarray | None = None) -> str:
    h = hashlib.sha256(json.dumps([cfg.to_dict(), n, list(hw)], sort_keys=True).encode())
    if classes is not None:  # label-aware keys depend on every image's class
        h.update(np.ascontiguousarray(classes, np.int64).tobytes())
    return h.hexdigest()[:16]


def train_perturbations(surrogate: Surrogate, data: WorkingSet, labels: np.ndarray, centres: np.ndarray,
                        permutation: np.ndarray, cfg: UCConfig, *, device: torch.device, accelerator=None,
                        checkpoint_root: str | Path | None = None, resume: bool = False, num_workers: int = 0,
                        progress: bool = True, periodic: bool = False) -> tuple[torch.Tensor, list[list[float]], dict]:
    """Optimise one perturbation per cluster; return deltas (p, 3, h, w), loss curves, stats.

    Data-parallel over the processes of ``accelerator``: each global batch (same on every
    process) is split into contiguous shards, the loss of a shard is scaled so that the
    all-reduced gradient equals the single-process gradient of the whole batch, and all
    randomness is derived from (seed, epoch, step). So 1 and N processes, and a resumed and
    an uninterrupted run, follow the same trajectory up to float summation order.

    With ``checkpoint_root`` the state is saved after every epoch (``save_state``) and
    ``resume=True`` continues from the newest complete checkpoint.
    """
    from tqdm.auto import tqdm

    acc = accelerator if accelerator is not None else SingleProcess(device)
    rank, ws = world(accelerator)
    p = cfg.n_clusters
    bank = PerturbationBank(data.hw, cfg, periodic=periodic).to(device)
    opt = torch.optim.Adam(bank.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    bank, opt = acc.prepare(bank, opt)
    steps_per_epoch = len(epoch_batches(len(data), cfg.batch_size, ws, cfg.seed, 0))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps_per_epoch),
                                                       eta_min=cfg.min_lr)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    targets = torch.as_tensor(centres[permutation], dtype=torch.float32, device=device)  # (p, D)
    curves: list[list[float]] = [[] for _ in range(p)]
    start_epoch, n_images, seconds = 0, 0, 0.0
    key = run_key(cfg, len(data), data.hw)
    if checkpoint_root is not None and resume:
        ckpt = latest_checkpoint(Path(checkpoint_root))
        if ckpt is not None:
            state = load_checkpoint(ckpt, bank, opt, accelerator=accelerator, run_key=key)
            start_epoch, curves = state["epoch"], state["curves"]
            n_images, seconds = state["n_images"], state["train_seconds"]
            sched.load_state_dict(state["scheduler"])
            logger.info("resumed from %s at epoch %d/%d", ckpt, start_epoch, cfg.epochs)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               desc="training perturbations", disable=not (progress and is_main(accelerator)))
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sums = torch.zeros(p, dtype=torch.float64, device=device)
        counts = torch.zeros(p, dtype=torch.float64, device=device)
        gbatches = epoch_batches(len(data), cfg.batch_size, ws, cfg.seed, epoch)
        local = [gb[slice(*shard_bounds(len(gb), rank, ws))].tolist() for gb in gbatches]
        batches = loader(data, local, num_workers=num_workers, pin=device.type == "cuda")
        for step, (x, grey, idx) in enumerate(batches):
            gb = gbatches[step]
            a, b = shard_bounds(len(gb), rank, ws)
            step_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 100_003 + step)
            if cfg.augment_mode == "shifts":
                tops, lefts, flips = shift_params(len(gb), data.hw, step_gen)
            else:
                top, left, flips = augment_params(len(gb), data.hw, step_gen)
            x = x.to(device, non_blocking=True).float().div_(255)
            c = labels_t[idx].to(device)
            scale = ws / len(gb)  # sum over the shard / global batch, times ws (gradients are averaged)
            opt.zero_grad(set_to_none=True)
            deltas = bank()  # (p, 3, h, w), through the data-parallel wrapper
            d_leaf = deltas.detach().requires_grad_(True)
            for k in ([None] if cfg.train_on == "members" else range(p)):
                d = d_leaf[c] if k is None else d_leaf[k].expand_as(x)
                xp = perturb(x, d, grey)
                if cfg.augment and cfg.augment_mode == "shifts":
                    xp = shift_augment(xp, tops[a:b], lefts[a:b], flips[a:b])
                elif cfg.augment:
                    xp = augment(xp, top, left, flips[a:b])
                with acc.autocast():
                    feats = surrogate(xp)
                tgt = targets[c] if k is None else targets[k].expand(x.shape[0], -1)
                per_sample = feature_loss(feats.float(), tgt, cfg.loss)
                acc.backward(per_sample.sum() * scale)
                ks = c if k is None else torch.full_like(c, k)
                sums.index_add_(0, ks, per_sample.detach().double())
                counts.index_add_(0, ks, torch.ones_like(ks, dtype=torch.float64))
            deltas.backward(d_leaf.grad)  # second stage: into the generators, all-reduced
            opt.step()
            sched.step()
            n_images += len(gb) * (p if cfg.train_on == "all" else 1)
            bar.update(1)
        sums, counts = acc.reduce(sums, "sum"), acc.reduce(counts, "sum")
        for k in range(p):
            curves[k].append(float(sums[k] / counts[k]) if counts[k] > 0 else float("nan"))
        mean = float(sums.sum() / counts.sum().clamp(min=1))
        seconds += time.perf_counter() - t0
        bar.set_postfix(epoch=epoch + 1, loss=f"{mean:.4g}")
        logger.info("epoch %d/%d: mean loss %.5g", epoch + 1, cfg.epochs, mean)
        if checkpoint_root is not None:
            save_checkpoint(accelerator, Path(checkpoint_root), epoch + 1, {
                "epoch": epoch + 1, "curves": curves, "n_images": n_images, "train_seconds": seconds,
                "run_key": key, "scheduler": sched.state_dict()}, model=bank, optimizer=opt)
    bar.close()
    with torch.no_grad():
        module = bank.module if hasattr(bank, "module") else bank
        deltas = module().float().cpu()
    stats = {"train_seconds": seconds, "surrogate_fwd_bwd_images_per_second": n_images / max(seconds, 1e-9)}
    return deltas, curves, stats

