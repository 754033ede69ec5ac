"""How well perturbation keys agree with the labels a victim trains on (docs/design.md §1:
a label-free key protects only when it nearly predicts the labels).

Example:
    >>> from uc_datasets.evaluation.agreement import agreement
    >>> nmi, rule_acc = agreement([0, 0, 1, 1], [1, 1, 0, 1])
    >>> rule_acc
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["agreement"]


def agreement(groups: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """NMI of ``groups`` and ``labels``, and the accuracy of the best group -> label rule (the
    majority label of each group): how much of the labelling a victim could read off the keys.

    Example:
        >>> agreement([0, 0, 1, 1], [1, 1, 0, 1])[1]
        0.75
        >>> agreement([0, 1, 2], [2, 0, 1])
        (1.0, 1.0)
    """
    from sklearn.metrics import normalized_mutual_info_score

    groups, labels = np.asarray(groups, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if groups.shape != labels.shape or groups.ndim != 1 or not len(groups):
        raise ValueError(f"agreement needs two non-empty 1-d arrays of the same length, got {groups.shape} "
                         f"and {labels.shape}")
    table = np.zeros((groups.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (groups, labels), 1)
    return float(normalized_mutual_info_score(labels, groups)), float(table.max(1).sum() / len(labels))
