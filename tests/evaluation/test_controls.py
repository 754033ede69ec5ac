"""The noise controls: one fixed pattern per key at the budget, grey for grey data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uc_datasets.evaluation.comparison import ProtectedSets
from uc_datasets.evaluation.controls import CONTROLS, CONTROLS_N10, add_noise_controls, noise_control


def test_noise_controls_stay_within_epsilon_and_grey():
    clean = torch.randint(0, 256, (6, 1, 5, 5), dtype=torch.uint8).expand(6, 3, 5, 5).contiguous()
    keys = np.array([0, 1, 0, 1, 2, 2])
    out = noise_control(clean, keys, 16 / 255, seed=0)
    diff = out.to(torch.int16) - clean.to(torch.int16)
    assert int(diff.abs().max()) <= 16
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    unclipped = (clean > 16) & (clean < 239)
    same = unclipped[0] & unclipped[2]
    assert torch.equal(diff[0][same], diff[2][same])  # one pattern per key


def test_sign_control_is_plus_minus_epsilon_per_key():
    clean = torch.full((4, 3, 6, 6), 128, dtype=torch.uint8)
    out = noise_control(clean, np.array([0, 1, 0, 1]), 16 / 255, seed=0, kind="sign")
    diff = out.to(torch.int16) - 128
    assert set(diff.unique().tolist()) == {-16, 16}
    assert torch.equal(diff[0], diff[2]) and not torch.equal(diff[0], diff[1])
    with pytest.raises(ValueError, match="uniform"):
        noise_control(clean, np.array([0, 0, 0, 0]), 16 / 255, seed=0, kind="gauss")


def test_add_noise_controls_keys_each_control_by_image_cluster_or_class():
    clean = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    sets = ProtectedSets(clean, torch.tensor([0, 1, 2, 0, 1, 2]), clean[:2], torch.tensor([0, 1]))
    add_noise_controls(sets, [0, 0, 1, 1, 1, 0], 2, epsilon=8 / 255, surrogate="s", seed=1)
    assert set(sets.protected) == set(CONTROLS) | set(CONTROLS_N10)
    assert sets.groups["random-per-image"] is None
    assert sets.groups["sign-per-cluster"].tolist() == [0, 0, 1, 1, 1, 0]
    assert sets.groups["sign-per-class"].tolist() == [0, 1, 2, 0, 1, 2]
    assert sets.meta["sign-per-cluster"] == {"p": 2, "surrogate": "s"}
    assert sets.meta["random-per-class"] == {"p": 3, "surrogate": "none"}
    for images in sets.protected.values():
        assert int((images.int() - clean.int()).abs().max()) <= 8
    with pytest.raises(ValueError, match="one key per image"):
        noise_control(clean, [0, 1], 8 / 255, seed=0)
