"""The sample-wise contrastive residual (uc_datasets.methods.uc.contrastive_noise)."""

import pytest
import torch

from uc_datasets.methods.uc.config import UCConfig
from uc_datasets.methods.uc.contrastive_noise import ContrastiveNoiseConfig, craft_contrastive_noise

EPS = 8 / 255


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 12, 12, generator=g) * 255).to(torch.uint8)


def test_the_residual_is_sample_wise_within_its_budget_and_reproducible():
    """Every image gets its own residual (no two rows alike), in whole levels inside the budget,
    the same for the same seed. Whether it stops SimCLR is measured in benchmarks/strength.py
    (--screen-attackers simclr): at unit-test scale no fresh encoder learns NT-Xent at all."""
    x = _images(32)
    cfg = ContrastiveNoiseConfig(rounds=2, train_steps=2, noise_steps=2, batch_size=16, model_width=0.0625,
                                 step_size=0.5)
    stats = {}
    a = craft_contrastive_noise(x, torch.zeros(32, dtype=torch.bool), None, EPS, cfg, seed=3, progress=False,
                                stats=stats)
    b = craft_contrastive_noise(x, torch.zeros(32, dtype=torch.bool), None, EPS, cfg, seed=3, progress=False)
    assert a.dtype == torch.int8 and a.shape == (32, 3, 12, 12) and int(a.abs().max()) == 8
    assert torch.equal(a, b) and len(stats["contrastive_losses"]) == 2
    flat = a.flatten(1).float()
    same = (flat[:, None] == flat[None]).all(-1)
    assert int(same.sum()) == 32  # only the diagonal: no two images share a residual


def test_the_budget_is_split_in_whole_levels():
    def split_budget(epsilon: float, share: float) -> tuple[float, float]:
        return UCConfig(epsilon=epsilon, pattern="tile", contrastive_share=share).budgets

    assert [round(b * 255) for b in split_budget(16 / 255, 0.25)] == [12, 4]
    assert [round(b * 255) for b in split_budget(2 / 255, 0.01)] == [1, 1]  # each part keeps one level
    assert [round(b * 255) for b in split_budget(8 / 255, 0.99)] == [1, 7]


def test_a_base_perturbation_is_added_and_grey_images_see_the_luminance():
    x = _images(16)
    base = torch.full((16, 3, 12, 12), 4 / 255)
    grey = torch.arange(16) % 2 == 0
    cfg = ContrastiveNoiseConfig(rounds=1, train_steps=1, batch_size=8, model_width=0.0625, step_size=1.0)
    res = craft_contrastive_noise(x, grey, base, 2 / 255, cfg, progress=False)
    assert int(res.abs().max()) <= 2 and bool((res != 0).any())


@pytest.mark.parametrize("bad,match", [({"rounds": 0}, "rounds must be an integer"),
                                       ({"batch_size": 1}, "needs negatives"),
                                       ({"step_size": 2.0}, "step_size is a fraction"),
                                       ({"temperature": 0}, "temperature must be positive")])
def test_bad_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        craft_contrastive_noise(_images(4), torch.zeros(4, dtype=torch.bool), None, EPS,
                                ContrastiveNoiseConfig(**bad), progress=False)


def test_too_small_a_budget_or_set_is_refused():
    cfg = ContrastiveNoiseConfig(rounds=1, train_steps=1, batch_size=2)
    with pytest.raises(ValueError, match="at least one level"):
        craft_contrastive_noise(_images(4), torch.zeros(4, dtype=torch.bool), None, 0.4 / 255, cfg, progress=False)
    with pytest.raises(ValueError, match="at least two images"):
        craft_contrastive_noise(_images(1), torch.zeros(1, dtype=torch.bool), None, EPS, cfg, progress=False)
