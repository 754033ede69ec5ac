"""Relabelling: class-name embeddings (offline MiniLM) + K-means into n groups."""

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from uc_datasets.core.class_names import DEFAULT_ENCODER, embed_class_names, resolve_encoder
from uc_datasets.evaluation.relabel import (
    Relabeling,
    default_n_range,
    get_class_names,
    identity_relabeling,
    kmeans_relabeling,
    validate_n,
)

# Interleaved so that a correct grouping is not just "consecutive labels".
NAMES = ["apple", "car", "dog", "banana", "truck", "cat", "cherry", "bus", "horse"]


@pytest.fixture(scope="module")
def embeddings() -> np.ndarray:
    return embed_class_names(NAMES, encoder="offline")


def test_embeddings_are_unit_rows(embeddings):
    assert embeddings.shape == (9, 384)
    assert embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # Related names are closer than unrelated ones.
    cos = embeddings @ embeddings.T
    assert cos[0, 3] > cos[0, 1]  # apple~banana > apple~car
    assert cos[2, 5] > cos[2, 4]  # dog~cat > dog~truck


def test_fruits_vehicles_animals(embeddings):
    relabeling = kmeans_relabeling(NAMES, 3, embeddings=embeddings, seed=0)
    assert relabeling.mapping == (0, 1, 2, 0, 1, 2, 0, 1, 2)
    assert relabeling.group_names == ("apple | banana | cherry", "car | truck | bus", "dog | cat | horse")
    assert relabeling.method == "bert-kmeans" and relabeling.n_groups == 3


def test_encoder_string_path_gives_same_grouping():
    relabeling = kmeans_relabeling(NAMES, 3, encoder="offline", seed=1)
    assert relabeling.mapping == (0, 1, 2, 0, 1, 2, 0, 1, 2)


def test_mapping_is_seeded_and_canonical(embeddings):
    a = kmeans_relabeling(NAMES, 5, embeddings=embeddings, seed=7)
    b = kmeans_relabeling(NAMES, 5, embeddings=embeddings, seed=7)
    assert a == b
    assert a.mapping[0] == 0
    # Groups are numbered in order of first appearance, all non-empty.
    firsts = [a.mapping.index(g) for g in range(5)]
    assert firsts == sorted(firsts)
    assert sorted(set(a.mapping)) == list(range(5))


def test_kmeans_with_given_embeddings_exact():
    emb = np.array([[0.0, 1.0], [1.0, 0.0], [0.05, 1.0], [0.95, 0.05]])
    relabeling = kmeans_relabeling(["w", "x", "y", "z"], 2, embeddings=emb)
    assert relabeling.mapping == (0, 1, 0, 1)
    assert relabeling.group_names == ("w | y", "x | z")


def test_duplicate_embeddings_fail_clearly():
    with pytest.raises(ValueError, match="distinct"):
        kmeans_relabeling(["a", "b", "c"], 2, embeddings=np.ones((3, 2)))
    with pytest.raises(ValueError, match="3 class names"):
        kmeans_relabeling(["a", "b", "c"], 2, embeddings=np.eye(2))


def test_default_range_is_the_papers_clipped():
    assert default_n_range(37) == list(range(5, 37))
    assert default_n_range(100) == list(range(5, 37))
    assert default_n_range(10) == [5, 6, 7, 8, 9]
    assert default_n_range(4) == [3]
    assert default_n_range(3) == [2]
    with pytest.raises(ValueError, match="at least 3 classes"):
        default_n_range(2)


@pytest.mark.parametrize("n", [1, 9, 12])
def test_n_out_of_range(n):
    with pytest.raises(ValueError, match=r"n must be in \[2, 8\]"):
        validate_n(n, 9)


def test_apply_to_dataset_and_datasetdict():
    features = Features({"x": Value("int32"), "label": ClassLabel(names=["a", "b", "c"])})
    ds = Dataset.from_dict({"x": [10, 11, 12, 13], "label": [0, 1, 2, 1]}, features=features)
    relabeling = Relabeling((1, 0, 1), ("b", "a | c"), ("a", "b", "c"))
    out = relabeling.apply(ds)
    assert out["label"] == [1, 0, 1, 0]
    assert out["x"] == [10, 11, 12, 13]
    assert out.features["label"] == ClassLabel(names=["b", "a | c"])
    both = relabeling.apply(DatasetDict(train=ds, test=ds.select([2])))
    assert both["test"]["label"] == [1] and both["train"].features["label"].names == ["b", "a | c"]
    with pytest.raises(ValueError, match="--label-column"):
        relabeling.apply(ds, label_column="target")


def test_apply_to_plain_int_labels_and_bad_labels():
    ds = Dataset.from_dict({"label": [0, 2, 1]})
    out = Relabeling((0, 1, 1), ("a", "b | c"), ("a", "b", "c")).apply(ds)
    assert out["label"] == [0, 1, 1] and isinstance(out.features["label"], ClassLabel)
    with pytest.raises(ValueError, match="Unlabelled"):
        Relabeling((0, 1, 1), ("a", "b | c"), ("a", "b", "c")).map_labels([0, -1])


def test_identity_relabeling():
    relabeling = identity_relabeling(["x", "y"])
    assert relabeling.mapping == (0, 1) and relabeling.method == "original"
    assert relabeling.map_labels([1, 0, 1]).tolist() == [1, 0, 1]


def test_class_names_from_feature_or_list():
    labelled = Dataset.from_dict({"label": [0]}, features=Features({"label": ClassLabel(names=["cat", "dog"])}))
    assert get_class_names(labelled) == ["cat", "dog"]
    plain = Dataset.from_dict({"label": [0, 1]})
    assert get_class_names(plain, class_names=["cat", "dog"]) == ["cat", "dog"]
    with pytest.raises(ValueError, match="--class-names"):
        get_class_names(plain)
    with pytest.raises(ValueError, match="3 class names given"):
        get_class_names(labelled, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="distinct"):
        get_class_names(plain, class_names=["a", "a"])
    with pytest.raises(ValueError, match="not found"):
        get_class_names(plain, label_column="target")


def test_resolve_encoder_without_network(tmp_path):
    path, local = resolve_encoder("offline")
    assert local and (Path(path) / "config.json").is_file()
    assert resolve_encoder(DEFAULT_ENCODER) == ("bert-base-uncased", False)
    assert resolve_encoder(str(tmp_path)) == (str(tmp_path), True)


# --- pseudo-labels ----------------------------------------------------------------------------


def test_pseudo_labels_are_seeded_and_numbered_by_first_appearance():
    from uc_datasets.evaluation.relabel import pseudo_labeling

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(c * 10, 1, (20, 4)) for c in (2, 0, 1)])
    a = pseudo_labeling(features, 3, seed=1, encoder="test")
    b = pseudo_labeling(features, 3, seed=1, encoder="test")
    assert np.array_equal(a.train_labels, b.train_labels) and np.array_equal(a.centres, b.centres)
    assert a.train_labels.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert a.method == "pseudo-kmeans(test)" and a.to_dict()["sizes"] == [20, 20, 20]
    assert a.assign(np.array([[0.0] * 4, [20.0] * 4])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="shape"):
        a.assign(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least n=3 rows"):
        pseudo_labeling(features[:2], 3)


def test_pseudo_labels_are_not_a_function_of_the_class():
    """Two classes (bright / dark), each with two visual modes (left / right stripe): pixel K-means
    into two groups follows the stripe, so each class is split across both pseudo-labels."""
    from uc_datasets.evaluation.relabel import image_features, pseudo_labeling

    rng = np.random.default_rng(0)
    images, classes = [], []
    for i in range(40):
        cls, side = i % 2, (i // 2) % 2
        x = np.full((3, 8, 8), 0.45 + 0.1 * cls) + rng.normal(0, 0.01, (3, 8, 8))
        x[:, :, (0 if side == 0 else 6):(2 if side == 0 else 8)] += 0.5  # strong stripe, left or right
        images.append(x)
        classes.append(cls)
    images = torch.tensor(np.stack(images), dtype=torch.float32)
    classes = np.array(classes)
    (features,) = image_features(images, encoder="pixels-pca")
    labels = pseudo_labeling(features, 2, seed=0, encoder="pixels-pca").train_labels
    for cls in (0, 1):
        assert set(labels[classes == cls].tolist()) == {0, 1}  # each class is split
    # The labels follow the stripe side exactly.
    sides = np.array([(i // 2) % 2 for i in range(40)])
    assert abs(np.corrcoef(labels, sides)[0, 1]) == pytest.approx(1.0)


def test_pixel_pca_needs_fit():
    from uc_datasets.evaluation.relabel import PixelPCA

    with pytest.raises(RuntimeError, match="fit"):
        PixelPCA().transform(torch.zeros(2, 3, 4, 4))


def test_the_relabelling_is_named_after_its_encoder():
    from uc_datasets.evaluation.reporting import _class_name_kmeans

    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    assert kmeans_relabeling(["a", "b", "c"], 2, embeddings=emb, encoder="offline").method == "minilm-kmeans"
    assert kmeans_relabeling(["a", "b", "c"], 2, embeddings=emb).method == "bert-kmeans"  # the default encoder
    rows = [{"relabel": "pseudo-kmeans(pixels-pca)"}, {"relabel": "minilm-kmeans"}]
    assert _class_name_kmeans(rows) == "minilm-kmeans"  # the plot's x axis says MiniLM, not BERT


def test_the_metric_logs_under_a_readable_name():
    import sys

    from uc_datasets.evaluation.metrics import load_unlearnability

    module = sys.modules[type(load_unlearnability()).__module__]  # evaluate imports it under a hashed name
    assert module.__name__.startswith("evaluate_modules.") and len(module.__name__) > 60
    assert module.logger.name == "uc_datasets.evaluation.metrics.unlearnability"
