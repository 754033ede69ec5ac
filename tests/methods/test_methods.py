"""What each method does: SynPer's linear separability, PGD directions, EMinN's min-min, the Hub path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import image_dataset, structured_images
from tests.methods.helpers import COMMON, EPS, TINY, arrays
from uc_datasets import load_protector, verify
from uc_datasets.core.imaging import perturb
from uc_datasets.methods.optim import build_model, pgd
from uc_datasets.methods.synper import synthesize
from uc_datasets.registry import fit_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- SynPer
@pytest.mark.parametrize("sample_std", [0.0, 1.0])
def test_synper_perturbations_alone_are_linearly_separable(sample_std):
    from sklearn.linear_model import LogisticRegression

    n_classes, per_class = 10, 8
    labels = [i % n_classes for i in range(n_classes * per_class)]
    ds = image_dataset(structured_images(len(labels), size=(16, 16), seed=3), labels)
    prot = fit_method("synper", ds, label_column="label", sample_std=sample_std, **COMMON, **TINY["synper"])
    deltas = prot.perturbations_for([r["image"] for r in ds], labels=labels)
    feats = torch.stack(deltas).flatten(1).numpy()
    assert np.abs(feats).max() <= EPS + 1e-6
    probe = LogisticRegression(C=1e4, max_iter=5000).fit(feats, labels)
    assert probe.score(feats, labels) == 1.0  # a linear probe on the perturbations alone separates the classes
    half = len(labels) // 2  # and, trained on half the images, mostly classifies the other half's noise
    held_out = LogisticRegression(C=1e4, max_iter=5000).fit(feats[:half], labels[:half])
    assert held_out.score(feats[half:], labels[half:]) >= 0.9
    same = [d for d, y in zip(deltas, labels) if y == 0]
    assert torch.equal(same[0], same[1]) == (sample_std == 0)  # class-wise only without the per-image draw


def test_synthesize_is_blockwise_bounded_and_keyed():
    centre = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    a = synthesize(centre, b"k" * 16, seed=0, sample_std=1.0, epsilon=EPS, hw=(16, 16))
    assert a.shape == (3, 16, 16) and float(a.abs().max()) == pytest.approx(EPS)
    assert torch.equal(a[:, :4, :4], a[:, :1, :1].expand(3, 4, 4))  # duplicated into 4x4 blocks
    assert torch.equal(a, synthesize(centre, b"k" * 16, seed=0, sample_std=1.0, epsilon=EPS, hw=(16, 16)))
    assert not torch.equal(a, synthesize(centre, b"j" * 16, seed=0, sample_std=1.0, epsilon=EPS, hw=(16, 16)))
    assert not torch.equal(a, synthesize(centre, b"k" * 16, seed=1, sample_std=1.0, epsilon=EPS, hw=(16, 16)))


# ---------------------------------------------------------------------------- PGD and EMinN
def test_pgd_minimises_maximises_and_targets():
    torch.manual_seed(0)
    model = build_model("resnet18", 4, width=0.125, hw=(16, 16), seed=0, device=torch.device("cpu")).eval()
    model.requires_grad_(False)
    x, grey = torch.rand(8, 3, 16, 16), torch.tensor([False] * 6 + [True] * 2)
    y, zero = torch.arange(8) % 4, torch.zeros(8, 3, 16, 16)
    kw = dict(epsilon=16 / 255, steps=10, step_size=1.6 / 255)

    def loss(d, labels):
        return float(F.cross_entropy(model(perturb(x, d, grey)), labels))

    base = loss(zero, y)
    d_min = pgd(model, x, grey, y, zero, minimize=True, **kw)
    d_max = pgd(model, x, grey, y, zero, minimize=False, **kw)
    target = (y + 1) % 4
    d_tgt = pgd(model, x, grey, target, zero, minimize=True, **kw)
    assert loss(d_min, y) < base < loss(d_max, y)  # EMinN lowers, EMaxN raises the loss of the label
    assert loss(d_tgt, target) < loss(zero, target)  # AdvPoison pulls toward the target class
    assert all(float(d.abs().max()) <= 16 / 255 + 1e-7 for d in (d_min, d_max, d_tgt))


def test_eminn_classwise_min_min_reaches_the_stop_error(digits):
    prot = fit_method("eminn-classwise", digits, label_column="label", epsilon=16 / 255, max_rounds=15,
                      train_steps=5, model_width=0.125, batch_size=20, lr=0.05, seed=0, progress=False)
    stats = prot.metadata["stats"]
    assert stats["converged"] and stats["errors"][-1] < 0.1 and stats["rounds"] <= 15
    assert prot.config.params["steps"] == 1 and prot.config.params["step_size"] == pytest.approx(1.6 / 255)


def test_method_defaults_follow_the_references():
    import inspect
    from dataclasses import fields

    from uc_datasets.methods import advpoison, emaxn, eminn, synper

    classes = {"eminn": eminn.EMinN, "emaxn": emaxn.EMaxN, "advpoison": advpoison.AdvPoison, "synper": synper.SynPer}
    sig = {name: {f.name: f for f in fields(cls.config_class)} for name, cls in classes.items()}
    assert all(s["epsilon"].default == 16 / 255 for s in sig.values())
    assert eminn.DEFAULTS == {"samplewise": {"steps": 20, "stop_error": 0.01},
                              "classwise": {"steps": 1, "stop_error": 0.1}}
    assert sig["eminn"]["train_steps"].default == 10 and sig["eminn"]["batch_size"].default == 512
    assert sig["emaxn"]["steps"].default == 20 and sig["advpoison"]["steps"].default == 250
    fit = {name: inspect.signature(cls.fit).parameters for name, cls in classes.items()}
    assert all(fit[m]["label_column"].default is None for m in fit)  # label-agnostic by default
    assert all(sig[m]["surrogate"].default == "efficientnet-lite0" for m in sig)


# ---------------------------------------------------------------------------- the same Hub path
def test_baseline_protector_goes_through_the_hub_path(labelled, fitted_lc, tmp_path):
    from hub_server import HubServer, hub_environment

    token = "hf_UCtestFAKEtokenAttacks0123456789"
    prot = fitted_lc["eminn"]
    protected = labelled.map(prot, batched=True)
    with HubServer({token: "alice"}) as server, hub_environment(server, token, tmp_path / "hf_home"):
        from huggingface_hub import DatasetCard

        from uc_datasets.hub import CARD_KEY, push_protected

        prot.push_to_hub("alice/eminn-protector")
        assert server.repos[("model", "alice/eminn-protector")].private
        loaded = load_protector("alice/eminn-protector")
        assert type(loaded) is type(prot) and torch.equal(loaded.deltas, prot.deltas)
        result = push_protected(protected, "alice/eminn-ds", clean=labelled, protector=prot, progress=False)
        assert result.method == "EMinN" and result.n_clusters == len(labelled)
        record = DatasetCard.load("alice/eminn-ds", repo_type="dataset").data[CARD_KEY]["splits"]["train"]
        assert record["method"] == "EMinN" and record["passed"]
    assert not server.outside
    again = arrays(labelled.map(loaded, batched=True))
    assert all(np.array_equal(a, b) for a, b in zip(arrays(protected), again))
    assert verify(labelled, protected, EPS, progress=False).passed
