"""Key purity: how well do label-free keys (clusters of surrogate features) agree with labels?

A label-free protection works only if its keys agree with the labels a victim trains on: one
pattern per key is a shortcut for the victim exactly where keys and labels coincide. On the
strength benchmark's train data (the cpu profile: the class-balanced 2,000 Fashion-MNIST
train images, Debian package ``dataset-fashion-mnist``) and its surrogate features
(offline EfficientNet-Lite0 at 64 px), this script makes keys in several ways, for
p = 10, 20, 50, 100 keys, and scores them against every labelling: the original 10 classes
and the BERT-embedding K-means relabellings into n = 9..2 (``uc_datasets.evaluation.comparison.make_labelings``).
Scores (``uc_datasets.evaluation.agreement``): NMI, and the accuracy of the best key -> label rule
(majority label of each key). "Purity" is that rule accuracy against the 10 true classes.

Keying methods:

* ``kmeans``: K-means on the raw features (``uc_datasets.methods.uc.clustering.kmeans``, seed 0);
* ``kmeans-l2``: on L2-normalised features;
* ``kmeans-l2-pca``: L2, then PCA to 64 dims (the library's ``feature_norm="l2-pca"``);
* ``kmeans-l2-pca-min``: ``kmeans-l2-pca``, then every cluster smaller than
  ``0.25 * N / p`` images is merged, as a whole, into the remaining (large enough) centre
  nearest to its own centre; ``n_keys`` is the number of keys left;
* ``spectral-knn``: scikit-learn ``SpectralClustering`` (10-nearest-neighbour graph,
  ``cluster_qr`` assignment, seed 0) on the L2 + PCA features;
* ``self-label-r<k>``: start from ``kmeans-l2-pca``'s keys; each round trains a small
  ResNet-18 (width 0.125, crop + flip augmentation, 6 epochs) from scratch on the images with
  the current keys as labels, predicts the clean images and moves every image to its
  predicted key ("reassign all"); the keys after round k. Run for p = 10 and 50 only.

Nothing is tuned, and the test split is never read: only the train images are used.
``seconds`` is the time to make the keys from the features (self-labelling: cumulative,
including the starting K-means); the feature pass is timed once, in the config.

    python benchmarks/keys.py --profile smoke --no-progress   # seconds (used by the tests)
    python benchmarks/keys.py --profile cpu --threads 1       # about 3 minutes on 1 thread (measured)

Writes ``benchmarks/results/keys.json`` (``{"config": ..., "rows": [...]}``, one row per
method, p and labelling: method, p, n_keys, n_classes, relabel, nmi, rule_acc, seconds) and
prints two markdown tables: purity and NMI per method and p, and the rule accuracy against
every n for p = 10 and 50.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import _common
import _workload

from uc_datasets.evaluation.agreement import agreement
from uc_datasets.evaluation.comparison import make_labelings

if TYPE_CHECKING:
    import numpy as np
    import torch

    from uc_datasets.evaluation.relabel import Relabeling

logger = logging.getLogger("keys")

KMEANS_METHODS = ("kmeans", "kmeans-l2", "kmeans-l2-pca", "kmeans-l2-pca-min", "spectral-knn")
SELF_LABEL = "self-label"
PCA_DIMS = 64
MIN_FRACTION = 0.25  # kmeans-l2-pca-min: clusters under this fraction of N / p are merged
SPECTRAL_NEIGHBOURS = 10
VICTIM = "resnet18"


@dataclass(frozen=True)
class KeysProfile:
    """Sizes and settings of one run; fixed before the run."""

    n_train: int
    surrogate_image_size: int | None
    ps: tuple[int, ...]
    self_label_ps: tuple[int, ...]
    rounds: int
    victim_epochs: int
    victim_width: float = 0.125
    victim_batch_size: int = 64
    victim_lr: float = 0.1
    n_values: tuple[int, ...] = (9, 8, 7, 6, 5, 4, 3, 2)
    feature_batch_size: int = 64


_CPU = _workload.PROFILES["cpu"]
PROFILES = {
    # Seconds: checks the plumbing, not the method.
    "smoke": KeysProfile(n_train=100, surrogate_image_size=32, ps=(4, 8), self_label_ps=(4, 8), rounds=1,
                         victim_epochs=1),
    # The strength benchmark's cpu data and surrogate size.
    "cpu": KeysProfile(n_train=_CPU.n_train, surrogate_image_size=_CPU.surrogate_image_size, ps=(10, 20, 50, 100),
                       self_label_ps=(10, 50), rounds=2, victim_epochs=6),
}


# --- keys --------------------------------------------------------------------------------------


def compute_train_features(train_ds: Any, profile: KeysProfile, *, progress: bool) -> np.ndarray:
    """Surrogate features (N, D) of the train images (28 px working size, surrogate at its size)."""
    import torch

    from uc_datasets.core.surrogates import load_surrogate
    from uc_datasets.core.working_set import WorkingSet
    from uc_datasets.methods.uc.fit import compute_features

    surrogate = load_surrogate(_workload.SURROGATE, image_size=profile.surrogate_image_size)
    data = WorkingSet(train_ds, "image", (28, 28), progress=False)
    return compute_features(surrogate, data, batch_size=profile.feature_batch_size, device=torch.device("cpu"),
                            progress=progress)


def canonical(keys: np.ndarray) -> np.ndarray:
    """Renumber keys 0..k-1 in order of first appearance (empty keys disappear).

    Example:
        >>> canonical(np.array([5, 5, 2, 7, 2])).tolist()
        [0, 0, 1, 2, 1]
    """
    import numpy as np

    order: dict[int, int] = {}
    for k in np.asarray(keys).tolist():
        order.setdefault(int(k), len(order))
    return np.array([order[int(k)] for k in np.asarray(keys).tolist()], dtype=np.int64)


def merge_small(centres: np.ndarray, keys: np.ndarray, min_size: float) -> np.ndarray:
    """Merge every cluster with fewer than ``min_size`` members, as a whole, into the nearest
    (Euclidean, centre to centre) cluster that has at least ``min_size``; renumbered 0..k-1.

    If no cluster is large enough, the keys are returned unchanged (renumbered).

    Example:
        >>> c = np.array([[0.0], [1.0], [10.0]])
        >>> merge_small(c, np.array([0, 0, 0, 1, 2, 2, 2]), 2).tolist()
        [0, 0, 0, 0, 1, 1, 1]
    """
    import numpy as np

    from uc_datasets.methods.uc.clustering import assign

    keys = np.asarray(keys, dtype=np.int64)
    counts = np.bincount(keys, minlength=len(centres))
    big = np.flatnonzero(counts >= min_size)
    if len(big) == 0:
        return canonical(keys)
    target = np.arange(len(centres))
    small = np.flatnonzero(counts < min_size)
    if len(small):
        target[small] = big[assign(centres[small], centres[big])]
    return canonical(target[keys])


def spectral_keys(features: np.ndarray, p: int) -> np.ndarray:
    """SpectralClustering on a symmetric k-nearest-neighbour graph, ``cluster_qr`` labels."""
    import warnings

    from sklearn.cluster import SpectralClustering

    sc = SpectralClustering(n_clusters=p, affinity="nearest_neighbors",
                            n_neighbors=min(SPECTRAL_NEIGHBOURS, len(features) - 1), assign_labels="cluster_qr",
                            random_state=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return sc.fit_predict(features).astype("int64")


def kmeans_method_keys(method: str, feats: np.ndarray, pca_feats: np.ndarray, p: int) -> np.ndarray:
    """Keys of one of :data:`KMEANS_METHODS` at p (see the module docstring)."""
    from uc_datasets.methods.uc.clustering import (
        apply_feature_transform,
        fit_feature_transform,
        kmeans,
    )

    if method == "kmeans":
        return kmeans(feats, p, seed=0)[1]
    if method == "kmeans-l2":
        return kmeans(apply_feature_transform(feats, fit_feature_transform(feats, "l2")), p, seed=0)[1]
    if method == "kmeans-l2-pca":
        return kmeans(pca_feats, p, seed=0)[1]
    if method == "kmeans-l2-pca-min":
        centres, keys = kmeans(pca_feats, p, seed=0)
        return merge_small(centres, keys, MIN_FRACTION * len(feats) / p)
    if method == "spectral-knn":
        return spectral_keys(pca_feats, p)
    raise ValueError(f"unknown keying method {method!r}")


def self_label(images: torch.Tensor, keys: np.ndarray, p: int,
               profile: KeysProfile) -> list[tuple[np.ndarray, float]]:
    """``profile.rounds`` rounds of train-on-keys, predict, reassign all.

    Returns the keys after each round with the seconds since the first round started.
    """
    import numpy as np
    import torch

    from uc_datasets.core.models import build_victim
    from uc_datasets.evaluation.victims import TrainConfig, predict, train_victim

    config = TrainConfig(epochs=profile.victim_epochs, batch_size=profile.victim_batch_size, lr=profile.victim_lr,
                         augment="crop", seed=0)
    out, current, start = [], np.asarray(keys, dtype=np.int64), time.perf_counter()
    for r in range(profile.rounds):
        victim = build_victim(VICTIM, p, width=profile.victim_width, image_size=images.shape[-1], seed=0)
        victim = train_victim(victim, images, torch.as_tensor(current), config, progress=False)
        predicted = predict(victim, images, batch_size=512).numpy().astype(np.int64)
        logger.info("self-label p=%d round %d: %d of %d images moved, %d keys used", p, r + 1,
                    int((predicted != current).sum()), len(current), len(np.unique(predicted)))
        current = predicted
        out.append((current.copy(), time.perf_counter() - start))
    return out


# --- scoring and tables ---------------------------------------------------------------------


def score_rows(method: str, p: int, keys: np.ndarray, labels: np.ndarray, labelings: Sequence[Relabeling],
               seconds: float) -> list[dict]:
    """One row per labelling: NMI and best key -> label rule accuracy of ``keys``."""
    import numpy as np

    n_keys = int(len(np.unique(keys)))
    rows = []
    for lab in labelings:
        nmi, rule = agreement(keys, lab.map_labels(labels))
        rows.append({"method": method, "p": p, "n_keys": n_keys, "n_classes": lab.n_groups, "relabel": lab.method,
                     "nmi": nmi, "rule_acc": rule, "seconds": seconds})
    return rows


def methods_in(rows: list[dict]) -> list[str]:
    """The methods of ``rows`` in order of first appearance."""
    return list(dict.fromkeys(r["method"] for r in rows))


def purity_markdown(rows: list[dict]) -> str:
    """Purity (rule accuracy vs the 10 classes, %) and NMI for every method (rows) and p (columns)."""
    ps = sorted({r["p"] for r in rows})
    at10 = {(r["method"], r["p"]): r for r in rows if r["relabel"] == "original"}
    body = []
    for m in methods_in(rows):
        cells = []
        for p in ps:
            r = at10.get((m, p))
            cells.append("" if r is None else f"{100 * r['rule_acc']:.1f} / {r['nmi']:.3f}"
                         + (f" ({r['n_keys']} keys)" if r["n_keys"] != p else ""))
        body.append([m, *cells])
    return _common.markdown_table(["method", *[f"p={p}: purity % / NMI" for p in ps]], body)


def by_n_markdown(rows: list[dict], p: int) -> str:
    """Rule accuracy (%) of every method at ``p`` against every labelling (n = 10 first)."""
    sel = [r for r in rows if r["p"] == p]
    ns = sorted({r["n_classes"] for r in sel}, reverse=True)
    acc = {(r["method"], r["n_classes"]): r["rule_acc"] for r in sel}
    body = [[m, *[f"{100 * acc[(m, n)]:.1f}" if (m, n) in acc else "" for n in ns]] for m in methods_in(sel)]
    return f"p = {p}: key -> label rule accuracy %\n\n" + _common.markdown_table(
        ["method", *[f"n={n}" for n in ns]], body)


def tables(rows: list[dict], table_ps: Sequence[int]) -> str:
    """Both tables of the module docstring."""
    parts = ["Purity (best key -> label rule accuracy vs the 10 classes, %) / NMI\n\n" + purity_markdown(rows)]
    parts += [by_n_markdown(rows, p) for p in table_ps if any(r["p"] == p for r in rows)]
    return "\n".join(parts)


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--output", default=str(_common.RESULTS_DIR / "keys.json"))
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Make every method's keys at every p, score them against every labelling; return what was written."""
    import numpy as np

    from uc_datasets.core.sources import FASHION_MNIST_CLASSES
    from uc_datasets.evaluation.sweep import dataset_to_tensors
    from uc_datasets.methods.uc.clustering import (
        apply_feature_transform,
        fit_feature_transform,
    )

    args = parse_args(argv)
    _common.setup(args.threads)
    profile = PROFILES[args.profile]
    logger.info("profile %s: %s", args.profile, profile)
    t_start = time.perf_counter()

    train_ds = _common.load_balanced_fashion_mnist("train", profile.n_train)  # the test split is never loaded
    images, labels_t = dataset_to_tensors(train_ds, desc="train", progress=False)
    labels = labels_t.numpy()
    labelings = make_labelings(list(FASHION_MNIST_CLASSES), profile.n_values, "offline")
    with _common.Stopwatch() as t_feat:
        feats = compute_train_features(train_ds, profile, progress=args.progress)
    logger.info("features %s in %.1f s", feats.shape, t_feat.seconds)
    with _common.Stopwatch() as t_pca:
        pca_feats = apply_feature_transform(feats, fit_feature_transform(feats, "l2-pca", max_dims=PCA_DIMS, seed=0))

    rows: list[dict] = []
    ps = [p for p in profile.ps if p <= len(labels)]
    for method in KMEANS_METHODS:
        for p in ps:
            with _common.Stopwatch() as t:
                keys = kmeans_method_keys(method, feats, pca_feats, p)
            seconds = t.seconds + (t_pca.seconds if method not in ("kmeans", "kmeans-l2") else 0.0)
            rows += score_rows(method, p, keys, labels, labelings, seconds)
            logger.info("%s p=%d: %d keys, purity %.3f (%.1f s)", method, p, rows[-1]["n_keys"],
                        rows[-len(labelings)]["rule_acc"], seconds)
    for p in [p for p in profile.self_label_ps if p in ps]:
        with _common.Stopwatch() as t_base:
            base = kmeans_method_keys("kmeans-l2-pca", feats, pca_feats, p)
        for r, (keys, round_seconds) in enumerate(self_label(images, base, p, profile), start=1):
            seconds = t_pca.seconds + t_base.seconds + round_seconds
            rows += score_rows(f"{SELF_LABEL}-r{r}", p, keys, labels, labelings, seconds)
            logger.info("%s-r%d p=%d: %d keys, purity %.3f (%.1f s)", SELF_LABEL, r, p, rows[-1]["n_keys"],
                        rows[-len(labelings)]["rule_acc"], seconds)

    config = {**_common.run_record(), "mode": "keys", "profile": args.profile, **asdict(profile),
              "dataset": _workload.DATASET, "surrogate": _workload.SURROGATE, "n_images": len(labels),
              "class_counts": np.bincount(labels).tolist(), "feature_dim": int(feats.shape[1]),
              "pca_dims": int(pca_feats.shape[1]), "min_fraction": MIN_FRACTION,
              "spectral_neighbours": SPECTRAL_NEIGHBOURS, "victim": VICTIM, "kmeans_seed": 0,
              "feature_seconds": t_feat.seconds, "pca_seconds": t_pca.seconds,
              "labelings": {str(lab.n_groups): lab.to_dict() for lab in labelings},
              "test_split_used": False, "total_seconds": time.perf_counter() - t_start, "status": "complete"}
    payload = {"config": config, "rows": rows}
    _common.write_json(args.output, payload)
    logger.info("wrote %s (%.0f s)", args.output, config["total_seconds"])
    table_ps = [p for p in (10, 50) if p in ps] or ps
    print(tables(rows, table_ps))
    return payload


if __name__ == "__main__":
    main()
