"""The shared contract: every baseline protector maps, verifies, saves, loads and fingerprints like UC's."""

from __future__ import annotations

import json
import pickle

import datasets
import numpy as np
import pytest
import torch

from tests.conftest import FAST_FIT, image_dataset, structured_images
from tests.methods.helpers import (
    BASELINES,
    CLASSWISE,
    COMMON,
    EPS,
    SAMPLEWISE,
    TANH_BOUNDED,
    TINY,
    arrays,
)
from uc_datasets import UCProtector, load_protector, verify
from uc_datasets.methods.baseline import BaselineProtector, UnseenImageError
from uc_datasets.methods.synper import SynPerProtector
from uc_datasets.registry import DEFERRED, METHODS, fit_method, method_arguments

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry_and_fit_method_errors(labelled):
    assert set(METHODS) == {"uc", "eminn", "eminn-classwise", "emaxn", "advpoison", "synper", "deepconfuse"}
    assert DEFERRED == {}
    with pytest.raises(ValueError, match="unknown method 'tap'.*choose from uc, eminn"):
        fit_method("tap", labelled)
    assert {"n_clusters", "epochs", "surrogate", "epsilon", "seed"} <= set(method_arguments("uc"))
    assert "perturbation" not in method_arguments("eminn-classwise") and "steps" in method_arguments("eminn")
    assert {"grid", "sample_std", "surrogate", "epsilon"} <= set(method_arguments("SynPer"))


def test_fit_method_uc_returns_a_uc_protector(tiny_clip):
    ds = image_dataset(structured_images(8))
    prot = fit_method("uc", ds, surrogate=tiny_clip, **{**FAST_FIT, "n_clusters": 2, "epochs": 1})
    assert isinstance(prot, UCProtector) and prot.method == "UC-CLIP"


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("mode", ["label-consistent", "label-agnostic"])
def test_map_verify_and_epsilon_bound(method, mode, labelled, fitted_lc, fitted_la):
    prot = (fitted_lc if mode == "label-consistent" else fitted_la)[method]
    assert isinstance(prot, BaselineProtector)
    protected = labelled.map(prot, batched=True, batch_size=7)
    report = verify(labelled, protected, EPS, progress=False)
    assert report.passed, report.summary()
    assert report.fraction_changed > 0.5
    assert report.max_deviation == 8 or (method in TANH_BOUNDED and 1 <= report.max_deviation <= 8)
    assert protected["label"] == labelled["label"]
    deltas = prot.perturbations_for([r["image"] for r in labelled], labels=labelled["label"])
    assert max(float(d.abs().max()) for d in deltas) <= EPS + 1e-6
    single = labelled.map(prot)  # unbatched map: same images
    assert all(np.array_equal(a, b) for a, b in zip(arrays(protected), arrays(single)))
    raw = protected.cast_column("image", datasets.Image(decode=False))
    assert all(r["image"]["bytes"].startswith(b"\x89PNG") for r in raw)


@pytest.mark.parametrize("method", BASELINES)
def test_save_load_bit_identical_and_never_unpickles(method, labelled, fitted_lc, tmp_path, monkeypatch):
    prot = fitted_lc[method]
    prot.save_pretrained(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["config.json", "protector.safetensors"]
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["method"] == prot.method and cfg["config"]["params"] == prot.config.params

    def boom(*a, **k):
        raise AssertionError("unpickling during load")

    with monkeypatch.context() as m:
        m.setattr(pickle, "load", boom)
        m.setattr(pickle, "loads", boom)
        m.setattr(torch, "load", boom)
        loaded = load_protector(tmp_path / "p")
    assert type(loaded) is type(prot)
    a = labelled.map(prot, batched=True, load_from_cache_file=False)
    b = labelled.map(loaded, batched=True, load_from_cache_file=False)
    assert all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b)))
    with pytest.raises(ValueError, match="not an Unlearnable Clusters protector"):
        UCProtector.from_pretrained(tmp_path / "p")


@pytest.mark.parametrize("method", ["eminn", "synper"])
def test_fingerprint_cheap_stable_and_sensitive(method, fitted_la):
    from datasets.fingerprint import Hasher

    prot = fitted_la[method]
    assert prot._surrogate is not None
    blob = pickle.dumps(prot)
    assert len(blob) < 500_000  # perturbations + keys; never the classifier's weights
    clone = pickle.loads(blob)
    assert clone._surrogate is None and Hasher.hash(clone) == Hasher.hash(prot)
    clone.config.epsilon = 7 / 255
    assert Hasher.hash(clone) != Hasher.hash(prot)


@pytest.mark.parametrize("method", BASELINES)
def test_determinism_under_a_seed(method, labelled, fitted_lc):
    again = fit_method(method, labelled, label_column="label", **COMMON, **TINY[method])
    assert torch.equal(again.deltas, fitted_lc[method].deltas)
    other = fit_method(method, labelled, label_column="label", **{**COMMON, "seed": 1}, **TINY[method])
    assert not torch.equal(other.deltas, fitted_lc[method].deltas)


@pytest.mark.parametrize("method", SAMPLEWISE)
def test_samplewise_key_survives_shuffle_and_select(method, labelled, fitted_lc):
    prot = fitted_lc[method]
    assert prot.config.perturbation == "samplewise" and prot.n_rows == len(labelled)
    expected = arrays(labelled.map(prot, batched=True))
    shuffled = labelled.shuffle(seed=1)
    order = shuffled._indices.column(0).to_pylist()
    got = arrays(shuffled.map(prot, batched=True, batch_size=5))
    assert all(np.array_equal(g, expected[i]) for g, i in zip(got, order))
    sel = arrays(labelled.select([5, 2, 17]).map(prot, batched=True))
    assert all(np.array_equal(g, expected[i]) for g, i in zip(sel, [5, 2, 17]))


@pytest.mark.parametrize("method", SAMPLEWISE)
def test_samplewise_refuses_unseen_images(method, fitted_lc):
    new = image_dataset(structured_images(3, size=(16, 16), seed=42), [0, 1, 2])
    with pytest.raises(UnseenImageError, match="3 of 3 image.*not in the dataset this sample-wise"):
        new.map(fitted_lc[method], batched=True)


def test_samplewise_duplicates_share_one_perturbation(labelled):
    imgs = [r["image"] for r in labelled.select(range(6))]
    ds = image_dataset(imgs + imgs[:2], [i % 2 for i in range(8)])
    prot = fit_method("emaxn", ds, label_column="label", **COMMON, **TINY["emaxn"])
    assert prot.n_rows == 6
    out = arrays(ds.map(prot, batched=True))
    assert np.array_equal(out[0], out[6]) and np.array_equal(out[1], out[7])


@pytest.mark.parametrize("method", CLASSWISE)
def test_classwise_label_consistent_reads_the_label_column(method, labelled, fitted_lc):
    prot = fitted_lc[method]
    assert prot.label_column == "label" and prot.config.classes == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="label-consistent: it needs the label column 'label'"):
        labelled.remove_columns("label").map(prot, batched=True)
    new = image_dataset(structured_images(4, size=(20, 12), seed=5), [3, 2, 1, 0])  # unseen images, other size
    out = new.map(prot, batched=True)
    assert verify(new, out, EPS, progress=False).passed
    with pytest.raises(ValueError, match=r"label\(s\) \['7'\] of column 'label' were not among the classes"):
        image_dataset(structured_images(1, size=(16, 16)), [7]).map(prot, batched=True)


def test_grey_images_stay_grey_and_bounded(digits):
    prot = fit_method("eminn", digits, label_column="label", **COMMON, **TINY["eminn"])
    out = digits.map(prot, batched=True)
    assert {r["image"].mode for r in out} == {"L"}
    report = verify(digits, out, EPS, progress=False)
    assert report.passed and report.max_deviation <= 8


def test_map_with_worker_processes_matches(labelled, fitted_la):
    prot = fitted_la["synper"]
    prot.use_cache = False  # workers reload the classifier and predict the same classes
    try:
        a = labelled.map(prot, batched=True, batch_size=6, load_from_cache_file=False)
        b = labelled.map(prot, batched=True, batch_size=6, num_proc=2, load_from_cache_file=False)
    finally:
        prot.use_cache = True
    assert all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b)))


def test_bad_arguments_are_refused(labelled):
    with pytest.raises(ValueError, match="Did you mean epsilon=16/255"):
        fit_method("synper", labelled, label_column="label", epsilon=16)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        fit_method("emaxn", labelled, label_column="label", steps=0)
    with pytest.raises(ValueError, match="perturbation must be one of"):
        fit_method("eminn", labelled, label_column="label", perturbation="pixelwise")
    with pytest.raises(KeyError, match="label column 'y' not found"):
        fit_method("synper", labelled, label_column="y")
    with pytest.raises(ValueError, match="single class for every image"):
        fit_method("emaxn", labelled.select(range(0, 24, 4)), label_column="label", **TINY["emaxn"])
    assert isinstance(fit_method("synper", labelled, label_column="label", grid=4, progress=False), SynPerProtector)
