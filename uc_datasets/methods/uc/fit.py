"""The Unlearnable Clusters fit: keys (surrogate features -> K-means, or the classes) -> one
perturbation per key from the chosen family -> a :class:`FitResult`.

The keys need surrogate features only when they are clusters of them (label-free mode,
several clusters per class, coarser levels from the features) or when the family is trained
against the surrogate (:attr:`~uc_datasets.methods.uc.families.base.Family.surrogate_loss`):
:func:`needs_surrogate` says which, so that a label-aware fit with one key per class and a
drawn or crafted family never runs a surrogate pass. The perturbations come from the family
(:mod:`uc_datasets.methods.uc.families`); this module has no branch per family.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from uc_datasets.core.imaging import perturb
from uc_datasets.core.surrogates import Surrogate
from uc_datasets.core.working_set import WorkingSet
from uc_datasets.methods.uc.clustering import assign, kmeans, target_permutation
from uc_datasets.methods.uc.config import UCConfig
from uc_datasets.methods.uc.distributed import OTHER_RUN, broadcast_array, gather_rows, is_main, shard_bounds, world
from uc_datasets.methods.uc.families import FamilyInputs
from uc_datasets.methods.uc.training import loader, run_key

logger = logging.getLogger(__name__)

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
        for x, _, _ in tqdm(loader(data, batches, num_workers=num_workers, pin=device.type == "cuda"),
                            desc="surrogate features", disable=not (progress and is_main(accelerator))):
            out.append(surrogate(x.to(device, non_blocking=True).float().div_(255)).float())
    return gather_rows(accelerator, torch.cat(out), len(data)).cpu().numpy()



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
    for x, grey, idx in tqdm(loader(data, batches, num_workers=0, pin=False), desc="checking attack",
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
#: The run key of the fit an output directory belongs to (written when a fit starts).
FIT_KEY_FILE = "fit_key.json"


def refuse_other_run(out: Path, key: str, *, resume: bool, accelerator=None) -> None:
    """Refuse ``resume`` into an output directory of another fit before any work (features,
    clusters) is redone, then record ``key`` there. The checkpoint's own run key stays the
    check before any weight is loaded; this one saves the surrogate pass a refused run costs.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> refuse_other_run(d, "abc", resume=False)
        >>> refuse_other_run(d, "xyz", resume=True)
        Traceback (most recent call last):
        ValueError: ...
    """
    import json

    path = out / FIT_KEY_FILE
    if resume and path.is_file() and json.loads(path.read_text()).get("run_key") != key:
        raise ValueError(f"output directory {out} {OTHER_RUN}")
    if is_main(accelerator):
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run_key": key}))


def _cluster(surrogate: Surrogate, data: WorkingSet, cfg: UCConfig, *, device: torch.device, accelerator,
             cache_dir: Path | None, num_workers: int, progress: bool, key: str,
             classes: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Features (sharded) -> keys on the main process -> broadcast. Cached in ``cache_dir``.

    Label-free (``classes`` None): K-means of the (transformed) features into ``n_clusters``.
    Label-aware: ``clusters_per_class`` K-means clusters inside every class. Returns the arrays
    ``centres``, ``labels``, ``cluster_class`` (label-aware only), ``class_means`` and the feature
    transform (``tf_*``), and the seconds of each phase. ``key`` (:func:`run_key` of the fit) marks
    the cache, which is reused only under the same key.
    """
    from safetensors.numpy import load_file as np_load
    from safetensors.numpy import save_file as np_save

    from uc_datasets.methods.uc.clustering import (
        apply_feature_transform,
        fit_feature_transform,
        nested_kmeans,
    )

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
    source = level_source(cfg, class_names)
    if source == "class-names":
        if not class_names:
            raise ValueError("level_source='class-names' needs class names: use a ClassLabel label column or pass "
                             "class_names= to fit.")
        from uc_datasets.core.class_names import embed_class_names

        emb = embed_class_names(class_names, cfg.name_encoder)
    else:
        emb = arrays["class_means"]
    return [group_keys(emb, n, seed=cfg.seed)[cluster_class] for n in cfg.levels]


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




def level_source(cfg: UCConfig, class_names: list[str] | None) -> str:
    """Where label-aware coarser levels come from: ``class-names`` or ``features`` (``auto`` resolved).

    Example:
        >>> level_source(UCConfig(pattern="block", label_column="label", levels=(2,)), ["a", "b", "c"])
        'class-names'
    """
    if cfg.level_source != "auto":
        return cfg.level_source
    return "class-names" if class_names else "features"


def needs_surrogate(cfg: UCConfig, class_names: list[str] | None = None) -> bool:
    """Whether a fit with ``cfg`` reads surrogate features at all.

    Label-free keys are K-means clusters of the features; label-aware keys need them only for
    several clusters per class or for coarser levels grouped by their mean features. A family
    trained against the surrogate (``generator``, ``periodic-generator``) always needs it.
    Otherwise the keys are the classes, and neither the fit nor the map loads a surrogate.

    Example:
        >>> needs_surrogate(UCConfig(pattern="block", label_column="label"))
        False
        >>> needs_surrogate(UCConfig(pattern="block"))  # label-free: clusters of the features
        True
    """
    if cfg.family.surrogate_loss or not cfg.label_aware or cfg.clusters_per_class > 1:
        return True
    return bool(cfg.levels) and level_source(cfg, class_names) == "features"


def check_changes_pixels(deltas: torch.Tensor, cfg: UCConfig) -> None:
    """Refuse perturbations that round to no change of any pixel (they would publish the images
    unprotected), with what to change.

    Example:
        >>> check_changes_pixels(torch.full((1, 3, 2, 2), 0.4 / 255), UCConfig(pattern="error-min"))
        Traceback (most recent call last):
        ValueError: pattern='error-min' made perturbations that change no pixel ...
    """
    largest = float(deltas.abs().max()) * 255 if deltas.numel() else 0.0
    if largest < 0.5:  # added in whole uint8 levels: below half a level every pixel rounds back
        raise ValueError(
            f"pattern={cfg.pattern!r} made perturbations that change no pixel (the largest is {largest:.2f} of a uint8 "
            f"level at epsilon {cfg.epsilon_levels}/255), so every image would be published unprotected. Raise "
            "epsilon, or give a crafted family more to work with (error_min={'rounds': ...} or a larger "
            "'step_size'; options={'rounds': ...} for pattern='unrolled').")


def class_keys(classes: np.ndarray) -> dict[str, np.ndarray]:
    """The keys of a fit without features: one key per class (key = class index), no centres.

    Example:
        >>> class_keys(np.array([1, 0, 1]))["cluster_class"].tolist()
        [0, 1]
    """
    p = int(classes.max()) + 1
    return {"centres": np.zeros((p, 0), np.float32), "labels": np.asarray(classes, np.int64),
            "cluster_class": np.arange(p, dtype=np.int64)}


def fit_clusters(surrogate: Surrogate | None, data: WorkingSet, cfg: UCConfig, *, device: torch.device,
                 accelerator=None, output_dir: str | Path | None = None, resume: bool = False,
                 num_workers: int = 0, progress: bool = True, classes: np.ndarray | None = None,
                 class_names: list[str] | None = None, any_grey: bool = False) -> FitResult:
    """The whole Unlearnable Clusters optimisation on a prepared working set.

    ``classes`` (the class index of every image) switches to label-aware keys, nested in the
    classes; ``class_names`` lets coarser key levels follow the class names. ``surrogate`` is
    None when :func:`needs_surrogate` says the keys need no features (they are then the
    classes). The family of ``cfg.pattern`` makes the perturbations (grey patterns when
    ``any_grey``, so that grey images get the full epsilon).

    With ``output_dir``, features and clusters are cached there and training state is
    checkpointed after every epoch; ``resume=True`` continues a killed run.
    """
    out = Path(output_dir) if output_dir is not None else None
    key = run_key(cfg, len(data), data.hw, classes)  # this fit's identity: the resume check and the cluster cache
    if out is not None:
        refuse_other_run(out, key, resume=resume, accelerator=accelerator)
    family = cfg.family(cfg)
    if surrogate is None:
        if classes is None:
            raise ValueError("a fit without a surrogate needs label-aware keys (classes); see needs_surrogate().")
        arrays, seconds = class_keys(classes), {"features": 0.0, "kmeans": 0.0}
    else:
        arrays, seconds = _cluster(surrogate, data, cfg, device=device, accelerator=accelerator, cache_dir=out, key=key,
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
    trained = family.surrogate_loss
    made = family.fit(FamilyInputs(
        cfg, data, labels, levels, epsilon=cfg.budgets[0], grey=any_grey, device=device, progress=progress,
        classes=classes, surrogate=surrogate if trained else None, centres=raw_centres if trained else None,
        permutation=perm if trained else None, accelerator=accelerator, checkpoint_root=out, resume=resume,
        num_workers=num_workers))
    deltas, curves, stats = made.deltas, made.curves or [[] for _ in range(p)], made.stats
    check_changes_pixels(deltas, cfg)
    residual = None
    if cfg.contrastive_share:
        residual = contrastive_residual(cfg, data, deltas, labels, device=device, progress=progress, stats=stats)
    t3 = time.perf_counter()
    transform = {k[3:]: v for k, v in arrays.items() if k.startswith("tf_")}
    success = None
    if trained:
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
        surrogate_used=surrogate is not None,
    )
    return FitResult(deltas, centres, labels, perm, curves, stats, cluster_class=arrays.get("cluster_class"),
                     transform=transform, key_levels=[lv.tolist() for lv in levels], sample_residual=residual)
