"""DeepConfuse: the auto-encoder, the pseudo-update objective, the generator's ascent, the fit and its errors.

The contract tests (map, verify, epsilon, save/load, seed determinism, unseen images) run
over DeepConfuse too, in both label modes: ``deepconfuse`` is in ``helpers.BASELINES``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.methods.helpers import COMMON, EPS, TINY
from uc_datasets import load_protector, verify
from uc_datasets.core.imaging import perturb
from uc_datasets.methods.baseline import BaselineProtector
from uc_datasets.methods.deepconfuse import (
    AutoEncoder,
    DeepConfuseConfig,
    confusion_loss,
    generator_step,
    recalibrate_batchnorm,
)
from uc_datasets.methods.optim import build_model
from uc_datasets.registry import fit_method, method_arguments

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


def _digits(n: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real grey digits at 16 px as (x in [0, 1] (n, 3, 16, 16), grey (n,), labels (n,))."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images[:n] / 16).float().unsqueeze(1).expand(n, 3, 8, 8)
    return F.interpolate(x, size=(16, 16), mode="nearest"), torch.ones(n, dtype=torch.bool), \
        torch.from_numpy(d.target[:n]).long()


def test_autoencoder_keeps_any_size_and_stays_in_tanh_range():
    torch.manual_seed(0)
    g = AutoEncoder(channels=4, depth=3)
    for hw in ((16, 16), (7, 9), (1, 1), (28, 28)):
        out = g(torch.rand(2, 3, *hw))
        assert out.shape == (2, 3, *hw) and float(out.abs().max()) < 1
    assert [m.out_channels for m in g.encoder if isinstance(m, torch.nn.Conv2d)] == [4, 8, 16]
    assert isinstance(g.decoder[-1], torch.nn.Tanh)


def test_confusion_loss_is_the_clean_loss_after_one_sgd_step_on_the_poison():
    x, grey, y = _digits(12)
    net = build_model("resnet18", 10, width=0.0625, hw=(16, 16), seed=0, device=CPU).train()
    delta = (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * EPS
    before = {k: v.clone() for k, v in net.state_dict().items()}
    got = confusion_loss(net, delta, x, grey, y, lr=0.05)
    # the same step by hand on a copy: SGD without momentum, then the clean loss
    twin = copy.deepcopy(net)
    opt = torch.optim.SGD(twin.parameters(), lr=0.05)
    F.cross_entropy(twin(perturb(x, delta, grey)), y).backward()
    opt.step()
    assert float(got) == pytest.approx(float(F.cross_entropy(twin(x), y)), rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the classifier is untouched


@pytest.mark.parametrize("seed", [0, 1])
def test_generator_steps_raise_the_confusion_loss(seed):
    """At a fixed, partly trained classifier, Adam steps of the generator ascend its objective."""
    x, grey, y = _digits(32)
    torch.manual_seed(seed)
    net = build_model("resnet18", 10, width=0.0625, hw=(16, 16), seed=seed, device=CPU).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(10):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    gen = AutoEncoder(8, 2)
    g_opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    hist = [generator_step(gen, g_opt, net, x, grey, y, epsilon=16 / 255, lr=0.1) for _ in range(20)]
    assert np.mean(hist[-3:]) > hist[0] + 0.05, hist  # +0.17 at seeds 0 and 1; at least +0.04 over seeds 0-7
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())


def test_recalibrated_batchnorm_makes_eval_mode_compute_what_was_trained():
    torch.manual_seed(0)
    gen = AutoEncoder(4, 2)
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    xf = x.float() / 255
    train_out = gen.train()(xf).detach()
    stale = gen.eval()(xf).detach()  # running statistics still at their initial values
    recalibrate_batchnorm(gen, x, batch_size=16, device=CPU)
    assert not gen.training
    fresh = gen(xf).detach()
    assert (fresh - train_out).abs().max() < 0.02 < (stale - train_out).abs().max()


def test_fit_on_grey_digits_label_consistent(digits):
    prot = fit_method("deepconfuse", digits, label_column="label", **COMMON,
                      **{**TINY["deepconfuse"], "trials": 2})
    assert isinstance(prot, BaselineProtector) and prot.method == "DeepConfuse"
    assert prot.config.perturbation == "samplewise" and prot.n_rows == len(digits)
    assert prot.config.params["trials"] == 2 and prot.config.params["bound"] == "epsilon * tanh"
    stats = prot.metadata["stats"]
    assert len(stats["confusion_loss"]) == len(stats["classifier_loss_on_poison"]) == 2
    assert all(np.isfinite(stats["confusion_loss"]))
    assert 0 <= stats["last_classifier_accuracy_clean"] <= 1
    out = digits.map(prot, batched=True)
    assert {r["image"].mode for r in out} == {"L"}
    report = verify(digits, out, EPS, progress=False)
    assert report.passed and 1 <= report.max_deviation <= 8
    assert float(prot.deltas.abs().max()) < EPS


def test_label_agnostic_keys_the_surrogate_classes(labelled, fitted_la, fitted_lc, tmp_path):
    agnostic, consistent = fitted_la["deepconfuse"], fitted_lc["deepconfuse"]
    assert agnostic.config.label_source == "surrogate" and agnostic.surrogate_info["name"] == "efficientnet-lite0"
    assert consistent.config.label_source == "dataset" and consistent.config.classes == [0, 1, 2, 3]
    assert not torch.equal(agnostic.deltas, consistent.deltas)  # different labels, different training
    agnostic.save_pretrained(tmp_path / "p")
    loaded = load_protector(tmp_path / "p")
    assert loaded.method == "DeepConfuse" and loaded.config.params == agnostic.config.params
    assert torch.equal(loaded.deltas, agnostic.deltas)


def test_registered_with_its_arguments():
    args = set(method_arguments("DeepConfuse"))
    assert {"trials", "classifier_epochs", "generator_lr", "generator_depth", "epsilon", "surrogate"} <= args


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"trials": 0}, "trials must be an integer >= 1, got 0"),
    ({"classifier_epochs": 1.5}, "classifier_epochs must be an integer >= 1"),
    ({"lr": -0.1}, "lr must be a positive number"),
    ({"generator_lr": float("nan")}, "generator_lr must be a positive number"),
    ({"generator_depth": 9}, "generator_depth=9 halves the image more than 8 times"),
    ({"model": ""}, "model must be a victim name"),
    ({"model": "vgg11"}, "Unknown victim 'vgg11'"),
    ({"epsilon": 16}, "Did you mean epsilon=16/255"),
])
def test_bad_settings_are_refused_before_any_work(labelled, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_method("deepconfuse", labelled, label_column="label", **{**COMMON, **TINY["deepconfuse"], **kwargs})


def test_settings_dataclass_defaults_follow_the_reference():
    s = DeepConfuseConfig()
    assert (s.lr, s.generator_lr, s.batch_size, s.classifier_epochs) == (0.01, 1e-4, 256, 20)  # CIFAR reference
    assert (s.generator_channels, s.generator_depth) == (16, 4)  # the reference's strided auto-encoder
