"""K-means over surrogate features, nearest-centre assignment and the target permutation."""

from __future__ import annotations

import logging

import numpy as np
import torch

from uc_datasets.core.grouping import kmeans_groups

logger = logging.getLogger(__name__)

#: Above this many samples K-means switches to MiniBatchKMeans.
MINIBATCH_THRESHOLD = 50_000


def kmeans(features: np.ndarray, n_clusters: int, *, seed: int = 0,
           minibatch_threshold: int = MINIBATCH_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``features`` (N, D) into ``n_clusters``; return ``(centres (p, D), labels (N,))``.

    Uses scikit-learn ``KMeans`` (seeded, ``n_init=10``), or ``MiniBatchKMeans`` when
    ``N > minibatch_threshold``. Labels are the nearest final centre of each sample.

    Example:
        >>> x = np.r_[np.zeros((5, 2)), np.ones((5, 2)) * 10].astype(np.float32)
        >>> centres, labels = kmeans(x, 2, seed=0)
        >>> sorted(np.bincount(labels).tolist())
        [5, 5]
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = np.asarray(features, dtype=np.float32)
    n = x.shape[0]
    if n_clusters < 2:
        raise ValueError(f"n_clusters must be at least 2 (a permutation needs a wrong cluster), got {n_clusters}.")
    if n < n_clusters:
        raise ValueError(
            f"Cannot make {n_clusters} clusters from {n} images. Use fewer clusters (n_clusters<={n}) or more images."
        )
    if n > minibatch_threshold:
        logger.info("K-means: %d samples > %d, using MiniBatchKMeans", n, minibatch_threshold)
        km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=n_clusters, random_state=seed, n_init=10)
    km.fit(x)
    centres = km.cluster_centers_.astype(np.float32)
    labels = assign(x, centres)  # exactly the rule used at map time
    counts = np.bincount(labels, minlength=n_clusters)
    if (counts == 0).any():
        logger.warning("K-means produced %d empty cluster(s); their perturbations are trained on no image.",
                       int((counts == 0).sum()))
    return centres, labels


def assign(features: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for each row of ``features``.

    Example:
        >>> assign(np.array([[0.0], [9.0]]), np.array([[1.0], [8.0]])).tolist()
        [0, 1]
    """
    f = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    c = torch.as_tensor(np.asarray(centres), dtype=torch.float64)
    if f.numel() == 0:
        return np.zeros(0, dtype=np.int64)
    return torch.cdist(f, c).argmin(dim=1).numpy().astype(np.int64)


def target_permutation(n_clusters: int, kind: str = "shift", *, seed: int = 0) -> np.ndarray:
    """The wrong-cluster map g: ``"shift"`` is i -> i+1 mod p (the paper's), ``"derangement"``
    is a seeded random permutation with no fixed point.

    Example:
        >>> target_permutation(3).tolist()
        [1, 2, 0]
    """
    if kind == "shift":
        return (np.arange(n_clusters) + 1) % n_clusters
    if kind == "derangement":
        rng = np.random.default_rng(seed)
        while True:
            perm = rng.permutation(n_clusters)
            if not (perm == np.arange(n_clusters)).any():
                return perm
    raise ValueError(f"permutation must be 'shift' or 'derangement', got {kind!r}")


def fit_feature_transform(features: np.ndarray, kind: str, *, max_dims: int = 64,
                          seed: int = 0) -> dict[str, np.ndarray]:
    """The feature transform applied before K-means (``UCConfig.feature_norm``), as arrays.

    ``none``: identity (empty dict). ``l2``: rows scaled to unit length. ``l2-pca``: unit rows,
    then projected on their top ``max_dims`` principal components (``mean``, ``components``).

    Example:
        >>> t = fit_feature_transform(np.random.default_rng(0).normal(size=(20, 8)), "l2-pca", max_dims=3)
        >>> t["components"].shape
        (3, 8)
    """
    if kind == "none":
        return {}
    if kind == "l2":
        return {"l2": np.ones(1, np.float32)}
    if kind == "l2-pca":
        from sklearn.decomposition import PCA

        x = _l2(np.asarray(features, np.float32))
        k = int(min(max_dims, x.shape[0] - 1, x.shape[1]))
        if k < 1:
            return {"l2": np.ones(1, np.float32)}
        pca = PCA(n_components=k, random_state=seed).fit(x)
        return {"l2": np.ones(1, np.float32), "mean": pca.mean_.astype(np.float32),
                "components": pca.components_.astype(np.float32)}
    raise ValueError(f"feature_norm must be 'none', 'l2' or 'l2-pca', got {kind!r}")


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def apply_feature_transform(features: np.ndarray, transform: dict[str, np.ndarray]) -> np.ndarray:
    """Apply a transform from :func:`fit_feature_transform` (the same at fit and map time).

    Example:
        >>> apply_feature_transform(np.array([[3.0, 4.0]]), {"l2": np.ones(1)}).astype(float).round(3).tolist()
        [[0.6, 0.8]]
    """
    x = np.asarray(features, np.float32)
    if "l2" in transform:
        x = _l2(x)
    if "components" in transform:
        x = (x - transform["mean"]) @ transform["components"].T
    return x.astype(np.float32)


def nested_kmeans(features: np.ndarray, classes: np.ndarray, per_class: int, *,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-means inside every class: ``per_class`` clusters per class (fewer for tiny classes).

    ``classes`` is the class index (0..C-1) of every row. Returns ``(centres (p, D), labels
    (N,), cluster_class (p,))``: no cluster spans two classes, and cluster ids are ordered by
    class. With ``per_class=1`` each class is one cluster (its mean feature is the centre).

    Example:
        >>> x = np.array([[0.0], [1.0], [10.0], [11.0]], np.float32)
        >>> c, lab, cc = nested_kmeans(x, np.array([0, 0, 1, 1]), 2)
        >>> sorted(lab.tolist()), cc.tolist()
        ([0, 1, 2, 3], [0, 0, 1, 1])
    """
    x = np.asarray(features, np.float32)
    classes = np.asarray(classes, np.int64)
    if x.shape[0] != classes.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows for {classes.shape[0]} class labels")
    centres, cluster_class = [], []
    labels = np.zeros(len(classes), np.int64)
    for c in range(int(classes.max()) + 1 if len(classes) else 0):
        rows = np.flatnonzero(classes == c)
        if len(rows) == 0:
            continue
        k = min(per_class, len(np.unique(x[rows], axis=0)))
        if k <= 1:
            cent, lab = x[rows].mean(0, keepdims=True), np.zeros(len(rows), np.int64)
        else:
            from sklearn.cluster import KMeans

            km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(x[rows])
            cent = km.cluster_centers_.astype(np.float32)
            lab = assign(x[rows], cent)
        labels[rows] = lab + len(centres)
        centres.extend(cent)
        cluster_class.extend([c] * len(cent))
    return np.stack(centres).astype(np.float32), labels, np.asarray(cluster_class, np.int64)


def group_keys(embeddings: np.ndarray, n_groups: int, *, seed: int = 0) -> np.ndarray:
    """K-means ``embeddings`` (one row per key) into ``n_groups``; the group of every key.

    Groups are numbered by their smallest member, so the result is canonical.

    Example:
        >>> group_keys(np.array([[0.0], [0.1], [5.0]]), 2).tolist()
        [0, 0, 1]
    """
    e = np.asarray(embeddings, np.float64)
    n_groups = int(n_groups)
    if not 2 <= n_groups < e.shape[0]:
        raise ValueError(f"a level of {n_groups} groups needs more keys than groups; there are {e.shape[0]} keys. "
                         "Choose levels below the number of clusters (or classes).")
    return kmeans_groups(e, n_groups, seed=seed)
