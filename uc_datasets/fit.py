"""Cluster-wise perturbation training: features -> K-means -> one delta per cluster.

``train_on="members"`` (the paper's Algorithm 1) trains every cluster's perturbation at
once: each batch applies to each image the perturbation of its own cluster, so one epoch
is one surrogate pass over the data, whatever the number of clusters. ``"all"`` (the
reference code) trains each cluster's perturbation on every image, p passes an epoch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .clustering import assign, kmeans, target_permutation
from .config import UCConfig
from .data import WorkingSet, grey_mask_like
from .generator import Perturbation
from .imaging import luminance
from .surrogates import Surrogate

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


def perturb(x: torch.Tensor, delta: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
    """``clamp(x + delta, 0, 1)``; grey images get the luminance of delta on every channel."""
    lum = luminance(delta).expand_as(delta)
    return (x + torch.where(grey_mask_like(grey).to(x.device), lum, delta)).clamp(0.0, 1.0)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Reference-style train augmentation at any size: upscale by 256/224, random crop back,
    random horizontal flip per image. Differentiable in ``x``."""
    h, w = x.shape[-2:]
    bh, bw = max(h, round(h * 256 / 224)), max(w, round(w * 256 / 224))
    if (bh, bw) != (h, w):
        x = F.interpolate(x, size=(bh, bw), mode="bilinear", align_corners=False)
        top = int(torch.randint(0, bh - h + 1, (1,), generator=gen))
        left = int(torch.randint(0, bw - w + 1, (1,), generator=gen))
        x = x[..., top : top + h, left : left + w]
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


@torch.no_grad()
def compute_features(surrogate: Surrogate, data: WorkingSet, *, batch_size: int, device: torch.device,
                     progress: bool = True) -> np.ndarray:
    """Surrogate embeddings (N, D) of every working-set image, in order, in batches."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    out = []
    for x, _, _ in tqdm(loader, desc="surrogate features", disable=not progress):
        out.append(surrogate(x.to(device).float().div_(255)).cpu())
    return torch.cat(out).numpy()


@dataclass
class FitResult:
    """What training produced, before it is packaged as a protector."""

    deltas: torch.Tensor  # (p, 3, h, w) float32 in [-eps, eps]
    centres: np.ndarray  # (p, D)
    labels: np.ndarray  # (N,) cluster of every fit image
    permutation: np.ndarray  # (p,) target cluster of every cluster
    loss_curves: list[list[float]]  # [cluster][epoch]
    stats: dict = field(default_factory=dict)


def train_perturbations(surrogate: Surrogate, data: WorkingSet, labels: np.ndarray, centres: np.ndarray,
                        permutation: np.ndarray, cfg: UCConfig, *, device: torch.device,
                        progress: bool = True) -> tuple[torch.Tensor, list[list[float]], dict]:
    """Optimise one perturbation per cluster; return deltas (p, 3, h, w), loss curves, stats."""
    from tqdm.auto import tqdm

    p = cfg.n_clusters
    perts = nn.ModuleList(
        Perturbation(data.hw, cfg.epsilon, cfg.parametrization, ngf=cfg.ngf, n_blocks=cfg.n_blocks,
                     seed=cfg.seed * 100_003 + k)
        for k in range(p)
    ).to(device)
    opt = torch.optim.Adam(perts.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    rng = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=rng,
                                         drop_last=False)
    passes = p if cfg.train_on == "all" else 1
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * len(loader)),
                                                       eta_min=cfg.min_lr)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    targets = torch.as_tensor(centres[permutation], dtype=torch.float32, device=device)  # (p, D)
    curves: list[list[float]] = [[] for _ in range(p)]
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    n_images, t0 = 0, time.perf_counter()
    bar = tqdm(total=cfg.epochs * len(loader), desc="training perturbations", disable=not progress)
    for epoch in range(cfg.epochs):
        sums = torch.zeros(p, dtype=torch.float64)
        counts = torch.zeros(p, dtype=torch.float64)
        for x, grey, idx in loader:
            x = x.to(device).float().div_(255)
            c = labels_t[idx]
            opt.zero_grad(set_to_none=True)
            if cfg.train_on == "members":
                present = torch.unique(c)
                d_all = torch.zeros(p, 3, *data.hw, device=device)
                d_all = d_all.index_copy(0, present.to(device), torch.stack([perts[k]() for k in present.tolist()]))
                xp = perturb(x, d_all[c.to(device)], grey)
                if cfg.augment:
                    xp = augment(xp, aug_gen)
                per_sample = feature_loss(surrogate(xp), targets[c.to(device)], cfg.loss)
                per_sample.mean().backward()
                sums.index_add_(0, c, per_sample.detach().double().cpu())
                counts.index_add_(0, c, torch.ones_like(c, dtype=torch.float64))
            else:
                for k in range(p):
                    xp = perturb(x, perts[k]().expand_as(x), grey)
                    if cfg.augment:
                        xp = augment(xp, aug_gen)
                    loss = feature_loss(surrogate(xp), targets[k].expand(x.shape[0], -1), cfg.loss).mean()
                    loss.backward()
                    sums[k] += float(loss.detach()) * x.shape[0]
                    counts[k] += x.shape[0]
            opt.step()
            sched.step()
            n_images += x.shape[0] * passes
            bar.update(1)
        for k in range(p):
            curves[k].append(float(sums[k] / counts[k]) if counts[k] > 0 else float("nan"))
        mean = float(sums.sum() / counts.sum().clamp(min=1))
        bar.set_postfix(epoch=epoch + 1, loss=f"{mean:.4g}")
        logger.info("epoch %d/%d: mean loss %.5g", epoch + 1, cfg.epochs, mean)
    bar.close()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        deltas = torch.stack([perts[k]() for k in range(p)]).float().cpu()
    stats = {"train_seconds": seconds, "surrogate_fwd_bwd_images_per_second": n_images / max(seconds, 1e-9)}
    return deltas, curves, stats


@torch.no_grad()
def attack_success(surrogate: Surrogate, data: WorkingSet, labels: np.ndarray, deltas: torch.Tensor,
                   centres: np.ndarray, permutation: np.ndarray, *, batch_size: int, device: torch.device,
                   progress: bool = True) -> float:
    """Fraction of fit images whose perturbed embedding is nearest their target centre."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    hits = 0
    d = deltas.to(device)
    for x, grey, idx in tqdm(loader, desc="checking attack", disable=not progress):
        c = torch.as_tensor(labels[idx.numpy()], dtype=torch.long)
        f = surrogate(perturb(x.to(device).float().div_(255), d[c.to(device)], grey))
        hits += int((assign(f.cpu().numpy(), centres) == permutation[c.numpy()]).sum())
    return hits / len(data)


def fit_clusters(surrogate: Surrogate, data: WorkingSet, cfg: UCConfig, *, device: torch.device,
                 progress: bool = True) -> FitResult:
    """The whole Unlearnable Clusters optimisation on a prepared working set."""
    t0 = time.perf_counter()
    feats = compute_features(surrogate, data, batch_size=cfg.feature_batch_size, device=device, progress=progress)
    t1 = time.perf_counter()
    centres, labels = kmeans(feats, cfg.n_clusters, seed=cfg.seed)
    perm = target_permutation(cfg.n_clusters, cfg.permutation, seed=cfg.seed)
    t2 = time.perf_counter()
    logger.info("cluster sizes: %s", np.bincount(labels, minlength=cfg.n_clusters).tolist())
    deltas, curves, stats = train_perturbations(surrogate, data, labels, centres, perm, cfg, device=device,
                                                progress=progress)
    t3 = time.perf_counter()
    success = attack_success(surrogate, data, labels, deltas, centres, perm, batch_size=cfg.feature_batch_size,
                             device=device, progress=progress)
    t4 = time.perf_counter()
    logger.info("perturbed images nearest their target centre: %.1f%%", 100 * success)
    stats.update(
        n_images=len(data),
        working_hw=list(data.hw),
        cluster_sizes=np.bincount(labels, minlength=cfg.n_clusters).tolist(),
        attack_success=success,
        seconds={"features": t1 - t0, "kmeans": t2 - t1, "train": t3 - t2, "attack_check": t4 - t3},
        surrogate_fwd_images_per_second=len(data) / max(t1 - t0, 1e-9),
    )
    return FitResult(deltas, centres, labels, perm, curves, stats)
