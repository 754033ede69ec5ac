"""K-means over surrogate features, nearest-centre assignment and the target permutation."""

from __future__ import annotations

import logging

import numpy as np
import torch

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
