"""Label-agnostic (surrogate-predicted classes) and label-consistent (dataset labels) modes."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from tests.conftest import image_dataset, structured_images
from tests.methods.helpers import COMMON, TINY, arrays
from uc_datasets import load_protector, verify
from uc_datasets.core.imaging import working_tensor
from uc_datasets.core.labels import LabelSourceError, dataset_labels, load_classifier, predict_classes
from uc_datasets.core.protector import SurrogateMismatchError
from uc_datasets.registry import fit_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _x(ds, hw=(16, 16)) -> torch.Tensor:
    return torch.stack([working_tensor(r["image"], hw) for r in ds])


def test_label_agnostic_uses_the_imagenet_classes_of_the_surrogate(labelled, fitted_la):
    prot = fitted_la["eminn-classwise"]
    clf = load_classifier("efficientnet-lite0", image_size=32)
    pred = predict_classes(clf, _x(labelled))
    assert prot.config.label_source == "surrogate" and prot.label_column is None
    assert prot.config.classes == sorted(set(pred.tolist())) and len(prot.config.classes) >= 2
    assert all(0 <= c < 1000 for c in prot.config.classes)  # ImageNet class indices, not the dataset's labels
    assert prot.surrogate_info["name"] == "efficientnet-lite0" and prot.surrogate_info["weights_sha256"]
    counts = prot.metadata["labels"]["class_counts"]
    assert sum(counts.values()) == len(labelled) and prot.metadata["labels"]["label_source"] == "surrogate"
    # the map needs no label column: the class comes from the pixels
    out = labelled.remove_columns("label").map(prot, batched=True)
    assert verify(labelled.remove_columns("label"), out, COMMON["epsilon"], progress=False).passed


def test_cached_classes_match_the_classifier_and_unseen_images_get_a_fitted_class(labelled, fitted_la):
    prot = fitted_la["eminn-classwise"]
    imgs = [r["image"] for r in labelled]
    cached = prot.rows_for(imgs)
    prot.use_cache = False
    try:
        assert np.array_equal(prot.rows_for(imgs), cached)  # restricted argmax == fit-time argmax
        new = structured_images(6, size=(30, 20), seed=9)
        rows = prot.rows_for(new)
    finally:
        prot.use_cache = True
    assert ((rows >= 0) & (rows < prot.n_rows)).all()
    new_ds = image_dataset(new)
    assert verify(new_ds, new_ds.map(prot, batched=True), COMMON["epsilon"], progress=False).passed


def test_transformers_classifier_checkpoint_and_reload_check(labelled, tiny_classifier, tmp_path):
    prot = fit_method("synper", labelled, surrogate=tiny_classifier, **COMMON, **TINY["synper"])
    clf = load_classifier(tiny_classifier)
    assert prot.config.classes == sorted(set(predict_classes(clf, _x(labelled)).tolist()))
    assert prot.surrogate_info["kind"] == "vit-classifier"
    prot.save_pretrained(tmp_path / "p")
    loaded = load_protector(tmp_path / "p")
    loaded.use_cache = False  # reloads the classifier from its path and checks its weights
    a, b = arrays(labelled.map(prot, batched=True)), arrays(labelled.map(loaded, batched=True))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    cfg["surrogate"]["weights_sha256"] = "0" * 64
    (tmp_path / "p" / "config.json").write_text(json.dumps(cfg))
    other = load_protector(tmp_path / "p")
    other.use_cache = False
    with pytest.raises(SurrogateMismatchError, match="different weights"):
        other.rows_for([labelled[0]["image"]])


def test_encoder_without_a_classification_head_is_refused(labelled, tiny_clip):
    with pytest.raises(LabelSourceError, match="has no image-classification head.*efficientnet-lite0.*label_column"):
        fit_method("eminn-classwise", labelled, surrogate=tiny_clip, **COMMON, **TINY["eminn-classwise"])
    with pytest.raises(LabelSourceError, match="needs a surrogate classifier"):
        fit_method("synper", labelled, surrogate=None, **COMMON, **TINY["synper"])


def test_label_consistent_uses_the_dataset_labels(labelled, fitted_lc):
    prot = fitted_lc["synper"]
    assert prot.config.label_source == "dataset" and prot.config.surrogate is None
    assert prot.surrogate_info["name"] == "none (dataset labels)"
    assert prot.metadata["labels"]["class_names"] == {0: "r", 1: "g", 2: "b", 3: "r2"}
    assert prot.rows_for([r["image"] for r in labelled], labels=labelled["label"]).tolist() == labelled["label"]


def test_dataset_labels_validation():
    ds = image_dataset(structured_images(3, size=(8, 8)), ["cat", "dog", "cat"])
    values, classes, _ = dataset_labels(ds, "label")
    assert values == ["cat", "dog", "cat"] and classes == ["cat", "dog"]
    with pytest.raises(LabelSourceError, match="row 1 holds None"):
        dataset_labels(image_dataset(structured_images(2, size=(8, 8)), [1, None]), "label")
    ds = image_dataset(structured_images(4, size=(8, 8)), ["a", "b", "a", "b"])
    prot = fit_method("synper", ds, label_column="label", **COMMON, grid=2)
    assert prot.config.classes == ["a", "b"]
    assert verify(ds, ds.map(prot, batched=True), COMMON["epsilon"], progress=False).passed


def test_a_missing_class_label_names_its_row_and_the_fix():
    """-1 is how datasets marks a missing ClassLabel value; int2str would only say 'Invalid integer class label -1'."""
    ds = datasets.Dataset.from_dict({"label": [0, 1, -1, 0]}).cast_column("label", datasets.ClassLabel(names=["a", "b"]))
    with pytest.raises(LabelSourceError, match=r"row 2 holds -1 .*ds.filter\(lambda y: 0 <= y < 2"):
        dataset_labels(ds, "label")
