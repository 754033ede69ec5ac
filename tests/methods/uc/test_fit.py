import numpy as np
import pytest
import torch

from tests.conftest import FAST_FIT
from uc_datasets import UnlearnableClusters
from uc_datasets.core.imaging import perturb
from uc_datasets.methods.uc.training import augment, augment_params, feature_loss


def test_losses_exact():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert torch.allclose(feature_loss(f, t, "cosine"), torch.tensor([0.0, 1.0]))
    assert torch.allclose(feature_loss(f, t, "mse"), torch.tensor([0.0, 4.0]))
    kl = feature_loss(f, t, "kl")
    p = torch.softmax(t, 1)
    assert torch.allclose(kl, (p * (p.log() - torch.log_softmax(f, 1))).sum(1))
    assert float(kl[0]) == pytest.approx(0.0, abs=1e-7)


def test_perturb_clamps_and_uses_luminance_for_grey():
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).repeat(2, 1, 1, 1)
    d = torch.tensor([-0.1, 0.1, 0.1]).view(1, 3, 1, 1).repeat(2, 1, 1, 1)
    out = perturb(x, d, torch.tensor([False, True]))
    assert torch.allclose(out[0].flatten(), torch.tensor([0.0, 0.6, 1.0]))
    lum = 0.1 * (-0.299 + 0.587 + 0.114)
    assert torch.allclose(out[1].flatten(), torch.tensor([lum, 0.5 + lum, 1.0]))


def test_augment_keeps_shape_and_is_seeded():
    x = torch.rand(4, 3, 20, 20)
    p1 = augment_params(4, (20, 20), torch.Generator().manual_seed(0))
    p2 = augment_params(4, (20, 20), torch.Generator().manual_seed(0))
    assert p1[:2] == p2[:2] and torch.equal(p1[2], p2[2])
    a = augment(x, *p1)
    assert a.shape == x.shape and torch.equal(a, augment(x, *p2))
    same = augment(x, 0, 0, torch.zeros(4, dtype=torch.bool))
    up = torch.nn.functional.interpolate(x, size=(23, 23), mode="bilinear", align_corners=False)
    assert torch.equal(same, up[..., :20, :20])  # exact crop of the upscaled batch
    flipped = augment(x, 0, 0, torch.tensor([True, False, False, False]))
    assert torch.equal(flipped[0], same[0].flip(-1)) and torch.equal(flipped[1], same[1])


@pytest.mark.parametrize("loss", ["kl", "cosine", "mse"])
def test_training_lowers_the_loss(tiny_clip, rgb40, loss):
    cfg = {**FAST_FIT, "epochs": 6, "parametrization": "direct", "lr": 0.05, "loss": loss, "augment": False}
    prot = UnlearnableClusters(surrogate=tiny_clip, **cfg).fit(rgb40)
    curves = np.array(prot.metadata["loss_curves"])  # (clusters, epochs)
    assert curves.shape == (4, 6)
    assert np.nanmean(curves[:, -1]) < np.nanmean(curves[:, 0])


def test_train_on_all_trains_every_cluster_on_every_image(tiny_clip, rgb40):
    prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "train_on": "all", "epochs": 1}).fit(rgb40)
    stats = prot.metadata["stats"]
    assert stats["cluster_sizes"] and sum(stats["cluster_sizes"]) == 40
    curves = np.array(prot.metadata["loss_curves"])
    assert np.isfinite(curves).all()  # every generator saw images, even for small clusters
    assert prot.config.train_on == "all"


def test_fit_records_stats(fitted):
    _, prot = fitted
    s = prot.metadata["stats"]
    assert set(s["seconds"]) == {"features", "kmeans", "train", "attack_check"}
    assert 0.0 <= s["attack_success"] <= 1.0
    assert s["surrogate_fwd_bwd_images_per_second"] > 0
