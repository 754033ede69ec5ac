import pytest

from uc_datasets import UCConfig


@pytest.mark.parametrize("eps,match", [
    (16, "Did you mean epsilon=16/255"),
    (255.0, "not uint8 levels"),
    (0.0, "at least 1/255"),
    (-0.1, "at least 1/255"),
    (float("nan"), "must be a number"),
    ("16/255", "must be a number"),
    (True, "must be a number"),
])
def test_wrong_epsilon_is_refused_with_advice(eps, match):
    with pytest.raises(ValueError, match=match):
        UCConfig(epsilon=eps)


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
