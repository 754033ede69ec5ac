import numpy as np
import pytest
from PIL import Image

from uc_datasets import UCConfig


@pytest.mark.parametrize("eps,match", [
    (16, "Did you mean epsilon=16/255"),
    (255.0, "not uint8 levels"),
    (0.0, "at least 1/255"),
    (0.5 / 255, "at most half a uint8 level and would change no pixel"),
    (-0.1, "at least 1/255"),
    (float("nan"), "must be a number"),
    ("16/255", "must be a number"),
    (True, "must be a number"),
])
def test_wrong_epsilon_is_refused_with_advice(eps, match):
    with pytest.raises(ValueError, match=match):
        UCConfig(epsilon=eps)


def test_half_a_level_would_change_no_pixel():
    """Why 0.5/255 is refused: rounding half to even leaves every pixel as it was."""
    import torch

    from uc_datasets.core.imaging import apply_delta

    img = Image.new("RGB", (2, 2), (100, 100, 100))
    out = apply_delta(img, torch.full((3, 2, 2), 0.5 / 255), 0.5 / 255)
    assert np.array_equal(np.asarray(out), np.asarray(img))
    assert UCConfig(epsilon=0.6 / 255).epsilon_levels == 1


@pytest.mark.parametrize("eps", [np.float32(16 / 255), np.float64(16 / 255), "torch", 16 / 255])
def test_any_real_number_is_an_epsilon(eps):
    import torch

    eps = torch.tensor(16 / 255) if eps == "torch" else eps
    c = UCConfig(epsilon=eps)
    assert type(c.epsilon) is float and c.epsilon == 16 / 255 and c.epsilon_levels == 16
    assert UCConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("field,value", [("loss", "l2"), ("train_on", "cluster"), ("parametrization", "mlp"),
                                         ("permutation", "random"), ("n_clusters", 1), ("epochs", 0),
                                         ("batch_size", 2.5), ("lr", -1.0)])
def test_bad_settings(field, value):
    with pytest.raises(ValueError, match=field):
        UCConfig(**{field: value})


def test_defaults_follow_the_reference():
    c = UCConfig()
    assert (c.n_clusters, c.epsilon_levels, c.epochs, c.batch_size, c.loss) == (10, 16, 50, 256, "kl")
    assert (c.learning_rate, c.weight_decay, c.min_lr, c.permutation) == (1e-4, 5e-4, 1e-6, "shift")
    assert UCConfig(parametrization="direct").learning_rate == 1e-2
    assert UCConfig.from_dict({**c.to_dict(), "unknown_future_key": 1}) == c
