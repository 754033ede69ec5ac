"""The unsupervised (SimCLR) hacker: loss, augmentation, encoder, probe and a tiny real run."""

import math

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed

from tests.conftest import structured_images
from tests.torch_threads import one_thread
from uc_datasets.core.augment import color_jitter, simclr_augment
from uc_datasets.core.contrastive import SimCLREncoder, nt_xent_loss
from uc_datasets.evaluation.simclr import SimCLRConfig, encode, linear_probe, simclr_probe, train_simclr


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models train faster on one thread, and far faster when other jobs share the cores."""
    with one_thread():
        yield


def four_groups(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """conftest's structured images (4 colour/texture groups, i % 4) as uint8 (N, 3, H, W) and labels."""
    images = np.stack([np.asarray(img) for img in structured_images(n, size=(size, size), seed=seed)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.arange(n) % 4


# --- NT-Xent ---------------------------------------------------------------------------------


def test_nt_xent_is_log_2b_minus_1_for_unrelated_embeddings():
    torch.manual_seed(0)
    batch = 64
    loss = nt_xent_loss(torch.randn(batch, 512), torch.randn(batch, 512), temperature=0.5)
    # Cosines of random 512-d vectors are ~N(0, 1/512): every logit is about 0.
    assert float(loss) == pytest.approx(math.log(2 * batch - 1), abs=0.05)


def test_nt_xent_is_low_for_aligned_views():
    torch.manual_seed(0)
    z = torch.randn(64, 512)
    aligned = nt_xent_loss(z, z + 0.01 * torch.randn_like(z), temperature=0.5)
    # Positive cosine ~1 -> logit 2 against 126 logits ~0: log(e^2 + 126) - 2 = 2.89.
    assert float(aligned) == pytest.approx(math.log(math.exp(2) + 126) - 2, abs=0.05)
    assert float(aligned) < math.log(127) - 1.5


def test_nt_xent_matches_the_per_view_formula():
    torch.manual_seed(1)
    z1, z2, temperature = torch.randn(3, 5), torch.randn(3, 5), 0.3
    views = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    terms = []
    for i in range(6):
        positive = (i + 3) % 6
        others = torch.stack([views[i] @ views[j] / temperature for j in range(6) if j != i])
        terms.append(torch.logsumexp(others, 0) - views[i] @ views[positive] / temperature)
    assert float(nt_xent_loss(z1, z2, temperature)) == pytest.approx(float(torch.stack(terms).mean()), abs=1e-5)


def test_nt_xent_refuses_mismatched_or_single_views():
    with pytest.raises(ValueError, match="B >= 2"):
        nt_xent_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        nt_xent_loss(torch.randn(4, 4), torch.randn(4, 3))


# --- augmentation ----------------------------------------------------------------------------


def test_augment_keeps_shape_and_range_and_is_seeded():
    x = torch.rand(16, 3, 12, 12)
    set_seed(3)
    first = simclr_augment(x)
    second = simclr_augment(x)
    set_seed(3)
    again = simclr_augment(x)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    assert torch.equal(first, again)
    assert not torch.allclose(first, second)


def test_augment_grayscale_and_no_jitter():
    x = torch.rand(8, 3, 8, 8)
    grey = simclr_augment(x, jitter_p=0.0, gray_p=1.0)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    # Without jitter or grayscale the colours of a flat image survive the crop and flip.
    flat = torch.tensor([0.9, 0.2, 0.4]).view(1, 3, 1, 1).expand(4, 3, 8, 8)
    assert torch.allclose(simclr_augment(flat, jitter_p=0.0, gray_p=0.0), flat, atol=1e-6)


def test_augment_refuses_uint8():
    with pytest.raises(ValueError, match="float RGB images"):
        simclr_augment(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_color_jitter_changes_colours_within_range():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 6, 6)
    assert torch.allclose(color_jitter(x, 0.0, 0.0, 0.0, 0.0), x, atol=1e-6)
    jittered = color_jitter(x)
    assert float(jittered.min()) >= 0 and float(jittered.max()) <= 1
    assert (jittered - x).abs().mean() > 0.02
    # Grey images stay grey under saturation and hue changes.
    grey = x[:, :1].expand(-1, 3, -1, -1)
    out = color_jitter(grey, 0.0, 0.0, 0.4, 0.1)
    assert torch.allclose(out, grey, atol=1e-5)


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 1}, "NT-Xent needs other images as negatives"),
        ({"lr": 0}, "lr must be > 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"temperature": 0}, "temperature must be > 0"),
        ({"projection_dim": 0}, "projection_dim must be an integer >= 1"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale must be"),
        ({"crop_scale": (0.9, 0.2)}, "crop_scale must be"),
        ({"crop_scale": (0.5,)}, "crop_scale must be"),
        ({"jitter_strength": -1}, "jitter_strength must be >= 0"),
        ({"jitter_p": 1.5}, r"jitter_p is a probability and must be in \[0, 1\]"),
        ({"gray_p": -0.1}, r"gray_p is a probability"),
    ],
)
def test_config_validation_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimCLRConfig(**kwargs)


def test_config_defaults_and_round_trip():
    config = SimCLRConfig()
    assert (config.temperature, config.projection_dim, config.crop_scale, config.jitter_strength) == (
        0.5, 128, (0.2, 1.0), 0.5
    )
    assert (config.jitter_p, config.gray_p, config.batch_size) == (0.8, 0.2, 256)
    assert SimCLRConfig(batch_size=128).scaled_lr == pytest.approx(0.03)
    assert SimCLRConfig(**config.to_dict()) == config


# --- encoder, training, probe ----------------------------------------------------------------


def test_encoder_features_are_pooled_backbone_features():
    encoder = SimCLREncoder(width=0.125, image_size=16, projection_dim=32, seed=0).eval()
    x = torch.rand(5, 3, 16, 16)
    assert encoder.feature_dim == 64 and encoder.small_input
    assert encoder.features(x).shape == (5, 64)
    assert encoder(x).shape == (5, 32)
    assert not any("classifier" in name for name, _ in encoder.named_parameters())
    # Same seed, same weights.
    other = SimCLREncoder(width=0.125, image_size=16, projection_dim=32, seed=0).eval()
    assert torch.equal(other.features(x), encoder.features(x))


def test_encode_is_eval_mode_and_batch_independent():
    images, _ = four_groups(12, 8, seed=0)
    encoder = SimCLREncoder(width=0.125, image_size=8, seed=0)
    whole = encode(encoder, images)
    assert whole.shape == (12, 64) and not encoder.training
    assert torch.allclose(encode(encoder, images, batch_size=5), whole, atol=1e-5)


def test_linear_probe_on_separable_features_and_bad_shapes():
    rng = np.random.default_rng(0)
    labels = torch.arange(60) % 3
    features = torch.from_numpy(rng.normal(size=(60, 8))) + 5 * torch.nn.functional.one_hot(labels, 8)
    assert linear_probe(features[:30], labels[:30], features[30:], labels[30:]) == 1.0
    with pytest.raises(ValueError, match="same D"):
        linear_probe(features, labels, features[:, :4], labels)
    with pytest.raises(ValueError, match="labels"):
        linear_probe(features, labels[:10], features, labels)


def test_train_simclr_needs_two_images():
    with pytest.raises(ValueError, match="at least 2 training images"):
        train_simclr(torch.zeros(1, 3, 8, 8), SimCLRConfig(epochs=1, batch_size=2), width=0.125, progress=False)


def test_training_is_deterministic_under_a_seed():
    images, _ = four_groups(16, 8, seed=0)
    config = SimCLRConfig(epochs=2, batch_size=8, seed=5)
    first, history = train_simclr(images, config, width=0.125, progress=False)
    second, again = train_simclr(images, config, width=0.125, progress=False)
    assert history == again
    assert torch.equal(encode(first, images), encode(second, images))
    _, other = train_simclr(images, SimCLRConfig(epochs=2, batch_size=8, seed=6), width=0.125, progress=False)
    assert other != history


def test_loss_falls_and_probe_beats_chance_on_held_out_images():
    train_images, train_labels = four_groups(64, 8, seed=0)
    test_images, test_labels = four_groups(64, 8, seed=1)
    config = SimCLRConfig(epochs=6, batch_size=16, lr=0.5, seed=0)
    result = simclr_probe(
        train_images, train_images, train_labels, test_images, test_labels, config, width=0.125, progress=False
    )
    history = result["loss_history"]
    assert len(history) == 6 and result["seconds"] > 0
    # Starts near log(2B - 1) = 3.43; seeds 0-7 fall by 0.11-0.51 over 6 epochs (24 steps).
    assert history[0] == pytest.approx(math.log(31), abs=0.2)
    assert history[-1] < history[0] - 0.05
    # Chance is 0.25 (4 groups); seeds 0-7 reach 0.98-1.0, so 0.6 leaves a wide margin.
    assert result["probe_acc"] >= 0.6
