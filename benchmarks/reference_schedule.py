"""The reference code's perturbation-training schedule, re-implemented for speed comparisons.

What the public Unlearnable Clusters code does (docs/design.md §1), step by step:

1. surrogate features of every image, K-means into p clusters (here: the library's own
   :func:`~uc_datasets.methods.uc.fit.compute_features` and :func:`~uc_datasets.methods.uc.clustering.kmeans`, so
   both sides of a comparison start from identical clusters);
2. for each cluster i **in turn**: a fresh ResNet generator on a fixed noise image, Adam
   (lr 1e-4, weight decay 5e-4), cosine annealing per iteration down to 1e-6, and ``epochs``
   passes over the **whole dataset** (``train_on="all"``), every image pushed by delta_i
   toward the target centre mu_{g(i)}, g(i) = i + 1 mod p;
3. loss ``KLDivLoss(reduction="batchmean")(log_softmax(f(x + delta_i)), softmax(mu_{g(i)}))``;
4. augmentation on the clean images in the data loader (Resize 256 + RandomCrop 224 +
   horizontal flip, per image), then ``clamp(x + delta_i, 0, 1)``.

Difference from the library's fit: :func:`uc_datasets.methods.uc.training.train_perturbations` (default
``augment_mode="reference"``) augments the *perturbed* image ``x + delta``: upscale by 256/224,
crop at one offset shared by the whole batch, flip per image. This module, like the reference,
crops and flips each *clean* image independently and adds delta afterwards, so delta is never
shifted here. ``augment_mode="shifts"`` in the library instead applies per-image pad-and-crop
shifts and flips to the perturbed image, as a crop+flip victim sees it.

So one epoch of the reference costs p surrogate forward+backward passes per image, and a
fit costs ``p * epochs * N`` of them. The generators are built with the library's
:class:`~uc_datasets.methods.uc.generator.Perturbation` and the same seeds as the library's
``PerturbationBank``, so both sides start from the same weights; grey images get the
luminance of delta, as in the library (the reference is RGB-only; the cost is the same).

Example:
    >>> result = fit_reference(ds, surrogate=load_surrogate("efficientnet-lite0", image_size=64),
    ...                        n_clusters=10, epsilon=16 / 255, epochs=1, batch_size=256)  # doctest: +SKIP
    >>> result.stats["surrogate_fwd_bwd_images_per_second"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
import torch.nn.functional as F

from uc_datasets.core.surrogates import Surrogate
from uc_datasets.core.working_set import (
    WorkingSet,
    check_image_column,
    choose_working_hw,
    scan_sizes,
)
from uc_datasets.methods.uc.clustering import kmeans, target_permutation
from uc_datasets.core.imaging import perturb
from uc_datasets.methods.uc.fit import attack_success, compute_features
from uc_datasets.methods.uc.training import feature_loss
from uc_datasets.methods.uc.generator import Perturbation

logger = logging.getLogger("reference_schedule")


@dataclass
class ReferenceResult:
    """What the reference schedule produced."""

    deltas: torch.Tensor  # (p, 3, h, w) in [-eps, eps]
    centres: np.ndarray  # (p, D)
    labels: np.ndarray  # (N,) cluster of every image
    permutation: np.ndarray  # (p,) target cluster of every cluster
    loss_curves: list[list[float]]  # [cluster][epoch], mean loss over the epoch
    stats: dict = field(default_factory=dict)


def reference_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Resize by 256/224, random crop back to the input size and flip, each per image (no grad).

    The reference's ``Resize(256) + RandomCrop(224) + RandomHorizontalFlip`` at any size.

    Example:
        >>> reference_augment(torch.rand(2, 3, 28, 28), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 28, 28])
    """
    b, _, h, w = x.shape
    bh, bw = max(h, round(h * 256 / 224)), max(w, round(w * 256 / 224))
    if (bh, bw) != (h, w):
        x = F.interpolate(x, size=(bh, bw), mode="bilinear", align_corners=False)
    top = torch.randint(0, bh - h + 1, (b,), generator=gen)
    left = torch.randint(0, bw - w + 1, (b,), generator=gen)
    rows = (top[:, None] + torch.arange(h))[:, :, None].to(x.device)  # (B, h, 1)
    cols = (left[:, None] + torch.arange(w))[:, None, :].to(x.device)  # (B, 1, w)
    idx = torch.arange(b, device=x.device)[:, None, None]
    x = x.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x).contiguous()


def reference_loss(features: torch.Tensor, target: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """The reference's batch loss: ``KLDivLoss(batchmean)`` with features as logits (or the
    library's cosine/mse distances, averaged over the batch)."""
    target = target.expand_as(features)
    if kind == "kl":
        return F.kl_div(F.log_softmax(features, dim=1), F.softmax(target, dim=1), reduction="batchmean")
    return feature_loss(features, target, kind).mean()


def train_reference(surrogate: Surrogate, data: WorkingSet, centres: np.ndarray, permutation: np.ndarray, *,
                    epsilon: float, epochs: int, batch_size: int, lr: float = 1e-4, weight_decay: float = 5e-4,
                    min_lr: float = 1e-6, loss: str = "kl", ngf: int = 64, n_blocks: int = 6, seed: int = 0,
                    device: torch.device | str = "cpu",
                    progress: bool = True) -> tuple[torch.Tensor, list[list[float]], dict]:
    """Train one generator per cluster, one cluster after the other, each over every image.

    Returns deltas ``(p, 3, h, w)``, per-cluster loss curves and timing statistics.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    p, n = len(centres), len(data)
    steps = -(-n // batch_size)
    targets = torch.as_tensor(centres[permutation], dtype=torch.float32, device=device)
    deltas, curves = [], []
    passes, t0 = 0, time.perf_counter()
    bar = tqdm(total=p * epochs * steps, desc="reference schedule", disable=not progress)
    for k in range(p):
        pert = Perturbation(data.hw, epsilon, "generator", ngf=ngf, n_blocks=n_blocks,
                            seed=seed * 100_003 + k).to(device)
        opt = torch.optim.Adam(pert.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps), eta_min=min_lr)
        curve = []
        for epoch in range(epochs):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + k * 10_007 + epoch)
            order = torch.randperm(n, generator=gen).tolist()
            batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
            total, count = 0.0, 0
            for x, grey, idx in torch.utils.data.DataLoader(data, batch_sampler=batches):
                x = x.to(device).float().div_(255)
                x = reference_augment(x, gen)  # on the clean images, as the reference's loader does
                delta = pert()
                xp = perturb(x, delta.expand_as(x), grey)
                value = reference_loss(surrogate(xp), targets[k], loss)
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                sched.step()
                total += float(value.detach()) * len(idx)
                count += len(idx)
                passes += len(idx)
                bar.update(1)
            curve.append(total / max(count, 1))
        with torch.no_grad():
            deltas.append(pert().float().cpu())
        curves.append(curve)
        logger.info("reference: cluster %d/%d trained, final loss %.5g", k + 1, p, curve[-1])
    bar.close()
    seconds = time.perf_counter() - t0
    stats = {"train_seconds": seconds, "surrogate_fwd_bwd_passes": passes,
             "surrogate_fwd_bwd_images_per_second": passes / max(seconds, 1e-9)}
    return torch.stack(deltas), curves, stats


def fit_reference(ds: datasets.Dataset, image_column: str = "image", *, surrogate: Surrogate, n_clusters: int,
                  epsilon: float, epochs: int, batch_size: int, lr: float = 1e-4, weight_decay: float = 5e-4,
                  min_lr: float = 1e-6, loss: str = "kl", ngf: int = 64, n_blocks: int = 6, seed: int = 0,
                  feature_batch_size: int = 64, working_size: int = 224, device: torch.device | str = "cpu",
                  progress: bool = True) -> ReferenceResult:
    """The whole reference fit: features -> K-means -> cluster-by-cluster generator training.

    Data preparation (working resolution, decoding) is the library's, so a comparison with
    ``UnlearnableClusters.fit`` differs only in the training schedule. Also measures the
    attack success (share of images nearest their target centre) with the library's check.
    """
    device = torch.device(device)
    check_image_column(ds, image_column)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    sizes, _ = scan_sizes(ds, image_column, progress=progress)
    data = WorkingSet(ds, image_column, choose_working_hw(sizes, working_size), progress=progress)
    surrogate = surrogate.to(device)
    t1 = time.perf_counter()
    feats = compute_features(surrogate, data, batch_size=feature_batch_size, device=device, progress=progress)
    t2 = time.perf_counter()
    centres, labels = kmeans(feats, n_clusters, seed=seed)
    perm = target_permutation(n_clusters, "shift")
    t3 = time.perf_counter()
    deltas, curves, stats = train_reference(
        surrogate, data, centres, perm, epsilon=epsilon, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, min_lr=min_lr, loss=loss, ngf=ngf, n_blocks=n_blocks, seed=seed, device=device,
        progress=progress)
    t4 = time.perf_counter()
    success = attack_success(surrogate, data, labels, deltas, centres, perm, batch_size=feature_batch_size,
                             device=device, progress=progress)
    t5 = time.perf_counter()
    stats.update(
        n_images=len(data), working_hw=list(data.hw), attack_success=success,
        cluster_sizes=np.bincount(labels, minlength=n_clusters).tolist(),
        seconds={"load_and_decode": t1 - t0, "features": t2 - t1, "kmeans": t3 - t2, "train": t4 - t3,
                 "attack_check": t5 - t4},
    )
    return ReferenceResult(deltas, centres, labels, perm, curves, stats)
