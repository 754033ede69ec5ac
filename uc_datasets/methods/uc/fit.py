"""Cluster-wise perturbation training: features -> K-means -> one delta per cluster.

``train_on="members"`` (the paper's Algorithm 1) trains every cluster's perturbation at
once: each batch applies to each image the perturbation of its own cluster, so one epoch
is one surrogate pass over the data, whatever the number of clusters. ``"all"`` (the
reference code) trains each cluster's perturbation on every image, p passes an epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uc_datasets.core.imaging import crop_at, perturb
from uc_datasets.core.surrogates import Surrogate
from uc_datasets.core.working_set import WorkingSet
from uc_datasets.methods.uc.clustering import assign, kmeans, target_permutation
from uc_datasets.methods.uc.config import UCConfig
from uc_datasets.methods.uc.distributed import (
    broadcast_array,
    gather_rows,
    is_main,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    shard_bounds,
    world,
)
from uc_datasets.methods.uc.generator import Perturbation
from uc_datasets.methods.uc.patterns import ERROR_MIN, MODEL_FREE, combine_levels, tile_to

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


class _SingleProcess:
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


def _loader(data: WorkingSet, batches: list[list[int]], *, num_workers: int, pin: bool):
    return torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=num_workers, pin_memory=pin)


@torch.no_grad()
def compute_features(surrogate: Surrogate, data: WorkingSet, *, batch_size: int, device: torch.device,
                     accelerator=None, num_workers: int = 0, progress: bool = True) -> np.ndarray:
    """Surrogate embeddings (N, D) of every working-set image, in order, in batches.

    With several processes each computes a contiguous shard; the shards are gathered back
    in the original order with no row duplicated or dropped.
    """
    from tqdm.auto import tqdm

    rank, ws = world(accelerator)
    a, b = shard_bounds(len(data), rank, ws)
    batches = [list(range(i, min(i + batch_size, b))) for i in range(a, b, batch_size)]
    out = [torch.zeros(0, surrogate.embed_dim, device=device)]
    autocast = accelerator.autocast() if accelerator is not None else contextlib.nullcontext()
    with autocast:
        for x, _, _ in tqdm(_loader(data, batches, num_workers=num_workers, pin=device.type == "cuda"),
                            desc="surrogate features", disable=not (progress and is_main(accelerator))):
            out.append(surrogate(x.to(device, non_blocking=True).float().div_(255)).float())
    return gather_rows(accelerator, torch.cat(out), len(data)).cpu().numpy()


class PerturbationBank(nn.Module):
    """All clusters' perturbations as one module: ``forward()`` -> deltas (p, 3, h, w).

    One module so that ``accelerator.prepare`` wraps it once for data parallelism.
    """

    def __init__(self, hw: tuple[int, int], cfg: UCConfig):
        super().__init__()
        self.hw = tuple(hw)
        # pattern="periodic-generator": each generator makes one period x period tile that is
        # repeated over the image, so the perturbation is periodic by construction.
        self.periodic = cfg.pattern == "periodic-generator"
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


def _epoch_batches(n: int, batch_size: int, ws: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Global batches of an epoch: a permutation seeded by (seed, epoch), cut in ``batch_size``.

    A last batch smaller than the number of processes is dropped (each process needs one image).
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).numpy()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= ws]


def _run_key(cfg: UCConfig, n: int, hw: tuple[int, int], classes: np.ndarray | None = None) -> str:
    import hashlib

    h = hashlib.sha256(json.dumps([cfg.to_dict(), n, list(hw)], sort_keys=True).encode())
    if classes is not None:  # label-aware keys depend on every image's class
        h.update(np.ascontiguousarray(classes, np.int64).tobytes())
    return h.hexdigest()[:16]


def train_perturbations(surrogate: Surrogate, data: WorkingSet, labels: np.ndarray, centres: np.ndarray,
                        permutation: np.ndarray, cfg: UCConfig, *, device: torch.device, accelerator=None,
                        checkpoint_root: str | Path | None = None, resume: bool = False, num_workers: int = 0,
                        progress: bool = True) -> tuple[torch.Tensor, list[list[float]], dict]:
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

    acc = accelerator if accelerator is not None else _SingleProcess(device)
    rank, ws = world(accelerator)
    p = cfg.n_clusters
    bank = PerturbationBank(data.hw, cfg).to(device)
    opt = torch.optim.Adam(bank.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    bank, opt = acc.prepare(bank, opt)
    steps_per_epoch = len(_epoch_batches(len(data), cfg.batch_size, ws, cfg.seed, 0))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps_per_epoch),
                                                       eta_min=cfg.min_lr)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    targets = torch.as_tensor(centres[permutation], dtype=torch.float32, device=device)  # (p, D)
    curves: list[list[float]] = [[] for _ in range(p)]
    start_epoch, n_images, seconds = 0, 0, 0.0
    key = _run_key(cfg, len(data), data.hw)
    if checkpoint_root is not None and resume:
        ckpt = latest_checkpoint(Path(checkpoint_root))
        if ckpt is not None:
            state = load_checkpoint(ckpt, bank, opt)
            if state.get("run_key") != key:
                raise ValueError(f"checkpoint {ckpt} is from a different configuration or dataset; use a new "
                                 "output directory or run without --resume.")
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
        gbatches = _epoch_batches(len(data), cfg.batch_size, ws, cfg.seed, epoch)
        local = [gb[slice(*shard_bounds(len(gb), rank, ws))].tolist() for gb in gbatches]
        loader = _loader(data, local, num_workers=num_workers, pin=device.type == "cuda")
        for step, (x, grey, idx) in enumerate(loader):
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


@torch.no_grad()
def attack_success(surrogate: Surrogate, data: WorkingSet, labels: np.ndarray, deltas: torch.Tensor,
                   centres: np.ndarray, permutation: np.ndarray, *, batch_size: int, device: torch.device,
                   accelerator=None, progress: bool = True) -> float:
    """Fraction of fit images whose perturbed embedding is nearest their target centre."""
    from tqdm.auto import tqdm

    rank, ws = world(accelerator)
    a, b = shard_bounds(len(data), rank, ws)
    batches = [list(range(i, min(i + batch_size, b))) for i in range(a, b, batch_size)]
    hits = torch.zeros(1, dtype=torch.float64, device=device)
    d = deltas.to(device)
    for x, grey, idx in tqdm(_loader(data, batches, num_workers=0, pin=False), desc="checking attack",
                             disable=not (progress and is_main(accelerator))):
        c = torch.as_tensor(labels[idx.numpy()], dtype=torch.long)
        f = surrogate(perturb(x.to(device).float().div_(255), d[c.to(device)], grey))
        hits += int((assign(f.float().cpu().numpy(), centres) == permutation[c.numpy()]).sum())
    if accelerator is not None:
        hits = accelerator.reduce(hits, "sum")
    return float(hits) / len(data)


@dataclass
class FitResult:
    """What training produced, before it is packaged as a protector."""

    deltas: torch.Tensor  # (p, 3, h, w) float32 in [-eps, eps]
    centres: np.ndarray  # (p, D)
    labels: np.ndarray  # (N,) cluster of every fit image
    permutation: np.ndarray  # (p,) target cluster of every cluster
    loss_curves: list[list[float]]  # [cluster][epoch]
    stats: dict = field(default_factory=dict)
    cluster_class: np.ndarray | None = None  # (p,) class index of every cluster (label-aware mode)
    transform: dict = field(default_factory=dict)  # feature transform before assignment
    key_levels: list[list[int]] = field(default_factory=list)  # group of every cluster, per coarser level
    sample_residual: torch.Tensor | None = None  # (N, 3, h, w) int8 levels, the contrastive residual per fit image


CLUSTERS_FILE = "clusters.safetensors"


def _cluster(surrogate: Surrogate, data: WorkingSet, cfg: UCConfig, *, device: torch.device, accelerator,
             cache_dir: Path | None, num_workers: int, progress: bool,
             classes: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Features (sharded) -> keys on the main process -> broadcast. Cached in ``cache_dir``.

    Label-free (``classes`` None): K-means of the (transformed) features into ``n_clusters``.
    Label-aware: ``clusters_per_class`` K-means clusters inside every class. Returns the arrays
    ``centres``, ``labels``, ``cluster_class`` (label-aware only), ``class_means`` and the feature
    transform (``tf_*``), and the seconds of each phase.
    """
    from safetensors.numpy import load_file as np_load
    from safetensors.numpy import save_file as np_save

    from uc_datasets.methods.uc.clustering import (
        apply_feature_transform,
        fit_feature_transform,
        nested_kmeans,
    )

    key = _run_key(cfg, len(data), data.hw, classes)
    cached = cache_dir / CLUSTERS_FILE if cache_dir is not None else None
    if cached is not None and cached.is_file():
        from safetensors import safe_open

        with safe_open(str(cached), "np") as f:
            same = (f.metadata() or {}).get("run_key") == key
        if same:
            arrays = np_load(str(cached))
            arrays.pop("features", None)
            logger.info("reusing features and clusters cached in %s", cached)
            return arrays, {"features": 0.0, "kmeans": 0.0, "cached": True}
    t0 = time.perf_counter()
    feats = compute_features(surrogate, data, batch_size=cfg.feature_batch_size, device=device,
                             accelerator=accelerator, num_workers=num_workers, progress=progress)
    t1 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    if is_main(accelerator):  # clustering runs once, on the main process
        transform = fit_feature_transform(feats, cfg.feature_norm, seed=cfg.seed)
        x = apply_feature_transform(feats, transform)
        if classes is None:
            centres, labels = kmeans(x, cfg.n_clusters, seed=cfg.seed)
        else:
            centres, labels, cluster_class = nested_kmeans(x, classes, cfg.clusters_per_class, seed=cfg.seed)
            arrays["cluster_class"] = cluster_class
            arrays["class_means"] = np.stack([x[classes == c].mean(0) for c in range(int(classes.max()) + 1)])
        arrays.update(centres=centres, labels=labels, **{f"tf_{k}": v for k, v in transform.items()})
        if transform or classes is not None:
            # The loss compares raw surrogate features: with transformed or class-nested keys
            # the targets are the members' mean raw feature (else the K-means centres are).
            arrays["raw_centres"] = np.stack([feats[labels == k].mean(0) if (labels == k).any()
                                              else np.zeros(feats.shape[1], np.float32)
                                              for k in range(len(centres))]).astype(np.float32)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np_save({"features": feats, **arrays}, str(cached), metadata={"run_key": key})
    arrays = broadcast_array(accelerator, arrays)  # any picklable object
    t2 = time.perf_counter()
    return arrays, {"features": t1 - t0, "kmeans": t2 - t1,
                    "surrogate_fwd_images_per_second": len(data) / max(t1 - t0, 1e-9)}


def key_levels(cfg: UCConfig, arrays: dict[str, np.ndarray], class_names: list[str] | None) -> list[np.ndarray]:
    """The group of every cluster at each coarser level of ``cfg.levels``.

    Label-free: K-means of the cluster centres. Label-aware: classes are grouped (by their
    class-name embeddings with ``level_source="class-names"``, the default when names are
    known, else by their mean features) and every cluster takes its class's group.
    """
    if not cfg.levels:
        return []
    from uc_datasets.methods.uc.clustering import group_keys

    cluster_class = arrays.get("cluster_class")
    if cluster_class is None:
        if cfg.level_source == "class-names":
            raise ValueError("level_source='class-names' needs label-aware mode (a label_column with class names).")
        return [group_keys(arrays["centres"], n, seed=cfg.seed) for n in cfg.levels]
    source = cfg.level_source
    if source == "auto":
        source = "class-names" if class_names else "features"
    if source == "class-names":
        if not class_names:
            raise ValueError("level_source='class-names' needs class names: use a ClassLabel label column or pass "
                             "class_names= to fit.")
        from uc_datasets.core.class_names import embed_class_names

        emb = embed_class_names(class_names, cfg.name_encoder)
    else:
        emb = arrays["class_means"]
    return [group_keys(emb, n, seed=cfg.seed)[cluster_class] for n in cfg.levels]


def keyed_deltas(cfg: UCConfig, p: int, hw: tuple[int, int], levels: list[np.ndarray], *,
                 grey: bool, family: str | None = None, epsilon: float | None = None) -> torch.Tensor:
    """Model-free perturbations (p, 3, h, w): the family's pattern per cluster plus one per group
    of every coarser level, each with its share of ``epsilon`` (default the config's). Grey data
    gets grey patterns."""
    eps = cfg.epsilon if epsilon is None else epsilon
    groups = [np.arange(p)] + list(levels)
    pats = combine_levels(family or cfg.pattern, groups, cfg.shares, hw, period=cfg.period,
                          channels=1 if grey else 3, seed=cfg.seed)
    return (eps * pats).expand(p, 3, *hw).contiguous().clamp(-eps, eps)


def error_min_deltas(cfg: UCConfig, data: WorkingSet, keys: np.ndarray, levels: list[np.ndarray], *,
                     grey: bool, device: torch.device, progress: bool) -> tuple[torch.Tensor, dict]:
    """The error-min families' perturbations (p, 3, h, w): keyed min-min noise with one head per
    key level; ``tile+error-min`` crafts it as a residual on top of the keyed tiles (``tile_share``)."""
    from uc_datasets.methods.uc.keyed_noise import craft_keyed_noise

    p = int(keys.max()) + 1
    base = None
    if cfg.pattern == "tile+error-min":
        base = keyed_deltas(cfg, p, data.hw, levels, grey=grey, family="tile", epsilon=cfg.tile_share * cfg.epsilon)
    x, is_grey = data.tensors()
    stats: dict = {}
    t0 = time.perf_counter()
    deltas = craft_keyed_noise(x, is_grey, torch.as_tensor(keys, dtype=torch.long), levels, cfg.epsilon,
                               cfg.error_min_config, base=base, seed=cfg.seed, device=device, progress=progress,
                               stats=stats)
    stats["train_seconds"] = time.perf_counter() - t0
    return deltas, stats


def contrastive_residual(cfg: UCConfig, data: WorkingSet, deltas: torch.Tensor, labels: np.ndarray, *,
                         device: torch.device, progress: bool, stats: dict) -> torch.Tensor:
    """The sample-wise contrastive residual (N, 3, h, w) int8 levels, crafted on top of each fit
    image's class-wise perturbation (at its per-image phase when ``phase="per-image"``)."""
    from uc_datasets.methods.uc.contrastive_noise import craft_contrastive_noise
    from uc_datasets.methods.uc.protector import phase_shift

    x, is_grey = data.tensors()
    base = deltas[torch.as_tensor(labels, dtype=torch.long)]
    if cfg.phase == "per-image":
        base = torch.stack([phase_shift(d, key) for d, key in zip(base, data.content_keys())])
    t0 = time.perf_counter()
    residual = craft_contrastive_noise(x, is_grey, base, cfg.budgets[1],
                                       cfg.contrastive_config, seed=cfg.seed, device=device, progress=progress,
                                       stats=stats)
    stats["contrastive_seconds"] = time.perf_counter() - t0
    return residual


def fit_clusters(surrogate: Surrogate, data: WorkingSet, cfg: UCConfig, *, device: torch.device,
                 accelerator=None, output_dir: str | Path | None = None, resume: bool = False,
                 num_workers: int = 0, progress: bool = True, classes: np.ndarray | None = None,
                 class_names: list[str] | None = None, any_grey: bool = False) -> FitResult:
    """The whole Unlearnable Clusters optimisation on a prepared working set.

    ``classes`` (the class index of every image) switches to label-aware keys, nested in the
    classes; ``class_names`` lets coarser key levels follow the class names. Model-free
    families (``tile``, ``ar``, ``block``) draw their patterns instead of training (grey
    patterns when ``any_grey``, so that grey images get the full epsilon).

    With ``output_dir``, features and clusters are cached there and training state is
    checkpointed after every epoch; ``resume=True`` continues a killed run.
    """
    out = Path(output_dir) if output_dir is not None else None
    arrays, seconds = _cluster(surrogate, data, cfg, device=device, accelerator=accelerator, cache_dir=out,
                               num_workers=num_workers, progress=progress, classes=classes)
    centres, labels = arrays["centres"], arrays["labels"]
    p = centres.shape[0]
    if p != cfg.n_clusters:  # label-aware: the number of clusters follows the classes
        cfg = dataclasses.replace(cfg, n_clusters=p)
    perm = target_permutation(p, cfg.permutation, seed=cfg.seed)
    logger.info("cluster sizes: %s", np.bincount(labels, minlength=p).tolist())
    levels = key_levels(cfg, arrays, class_names)
    t2 = time.perf_counter()
    raw_centres = arrays.get("raw_centres", centres)
    curves: list[list[float]] = [[] for _ in range(p)]
    # the class-wise part leaves contrastive_share of epsilon to the sample-wise residual
    key_cfg = dataclasses.replace(cfg, epsilon=cfg.budgets[0]) if cfg.contrastive_share else cfg
    if cfg.pattern in MODEL_FREE:
        deltas = keyed_deltas(key_cfg, p, data.hw, levels, grey=any_grey)
        stats: dict = {"train_seconds": 0.0}
    elif cfg.pattern in ERROR_MIN:
        deltas, stats = error_min_deltas(key_cfg, data, labels, levels, grey=any_grey, device=device,
                                         progress=progress)
    else:
        deltas, curves, stats = train_perturbations(surrogate, data, labels, raw_centres, perm, cfg, device=device,
                                                    accelerator=accelerator, checkpoint_root=out, resume=resume,
                                                    num_workers=num_workers, progress=progress)
    residual = None
    if cfg.contrastive_share:
        residual = contrastive_residual(cfg, data, deltas, labels, device=device, progress=progress, stats=stats)
    t3 = time.perf_counter()
    transform = {k[3:]: v for k, v in arrays.items() if k.startswith("tf_")}
    success = None
    if cfg.pattern not in MODEL_FREE + ERROR_MIN:
        success = attack_success(surrogate, data, labels, deltas, raw_centres, perm,
                                 batch_size=cfg.feature_batch_size, device=device, accelerator=accelerator,
                                 progress=progress)
        logger.info("perturbed images nearest their target centre: %.1f%%", 100 * success)
    t4 = time.perf_counter()
    fwd_ips = seconds.pop("surrogate_fwd_images_per_second", None)
    cached = seconds.pop("cached", False)
    stats.update(
        n_images=len(data),
        working_hw=list(data.hw),
        cluster_sizes=np.bincount(labels, minlength=p).tolist(),
        attack_success=success,
        seconds={**seconds, "train": t3 - t2, "attack_check": t4 - t3},
        surrogate_fwd_images_per_second=fwd_ips,
        clusters_from_cache=cached,
    )
    return FitResult(deltas, centres, labels, perm, curves, stats, cluster_class=arrays.get("cluster_class"),
                     transform=transform, key_levels=[lv.tolist() for lv in levels], sample_residual=residual)

