"""The key agreement metric: NMI and the best key -> label rule."""

from __future__ import annotations

import pytest

from uc_datasets.evaluation.agreement import agreement


def test_agreement_is_nmi_and_the_majority_rule_accuracy():
    assert agreement([0, 0, 1, 1], [1, 1, 0, 1]) == (pytest.approx(0.3437, abs=1e-3), 0.75)
    assert agreement([2, 0, 1], [0, 1, 2]) == (1.0, 1.0)  # a relabelling of the labels agrees fully
    assert agreement([0, 0, 0, 0], [0, 1, 0, 1]) == (0.0, 0.5)  # one key: the majority class


def test_agreement_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="same length"):
        agreement([0, 1], [0, 1, 1])
