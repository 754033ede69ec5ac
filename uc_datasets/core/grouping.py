"""Canonical K-means grouping, shared by both sides.

The protector groups its keys into coarser levels (:func:`uc_datasets.methods.uc.clustering.group_keys`)
and the hacker groups class names into new labels
(:func:`uc_datasets.evaluation.relabel.kmeans_relabeling`) the same way: seeded K-means with
10 restarts, groups numbered by their first member so that the result is canonical.
"""

from __future__ import annotations

import warnings

import numpy as np


def kmeans_groups(embeddings: np.ndarray, n_groups: int, *, seed: int = 0) -> np.ndarray:
    """The group of every row of ``embeddings`` after K-means into ``n_groups`` (seeded, 10 restarts).

    Groups are numbered in order of their first member, so equal partitions give equal arrays.

    Example:
        >>> kmeans_groups(np.array([[5.0], [0.0], [0.1]]), 2).tolist()
        [0, 1, 1]
    """
    return kmeans_partition(embeddings, n_groups, seed=seed)[0]


def kmeans_partition(embeddings: np.ndarray, n_groups: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`kmeans_groups` and the centre of every group, in the same canonical order: ``(groups (N,), centres (n, D))``.

    Example:
        >>> groups, centres = kmeans_partition(np.array([[5.0], [0.0], [0.1]]), 2)
        >>> groups.tolist(), centres.round(2).ravel().tolist()
        ([0, 1, 1], [5.0, 0.05])
    """
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        km = KMeans(n_clusters=int(n_groups), n_init=10, random_state=seed).fit(np.asarray(embeddings, np.float64))
    order: dict[int, int] = {}
    for g in km.labels_:
        order.setdefault(int(g), len(order))
    if len(order) != int(n_groups):  # pragma: no cover - K-means keeps clusters non-empty
        raise RuntimeError(f"K-means produced {len(order)} non-empty groups instead of {n_groups}.")
    permutation = np.array([old for old, _ in sorted(order.items(), key=lambda kv: kv[1])])
    return np.array([order[int(g)] for g in km.labels_], np.int64), km.cluster_centers_[permutation]
