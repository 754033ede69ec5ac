"""The evaluation sweep, its outputs and the recipe, on a tiny offline dataset pair."""

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from tests.torch_threads import one_thread
from uc_datasets.commands.evaluate import add_evaluate_arguments, run_evaluate
from uc_datasets.evaluation.sweep import ROW_KEYS, load_evaluation_data, score_epochs

REPO = Path(__file__).resolve().parents[2]
NAMES = ["apple", "banana", "car", "truck", "dog", "cat"]
PER_CLASS_TRAIN, PER_CLASS_TEST = 8, 4
TINY = ["--encoder", "offline", "--width", "0.0625", "--epochs", "1", "--batch-size", "16", "--no-progress"]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_thread():
        yield


def grey_image(label: int, rng: np.random.Generator, size: int = 8) -> Image.Image:
    array = np.full((size, size), 30 + 40 * label, dtype=np.int16) + rng.integers(0, 20, (size, size))
    return Image.fromarray(array.astype(np.uint8), mode="L")


def split(labels, images, label_feature) -> Dataset:
    features = Features({"image": ImageFeature(), "label": label_feature})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def make_pair(root: Path, *, protected_description: str = "", int_labels: bool = False, size: int = 8):
    """Save a clean DatasetDict (grey PNGs) and a protected train split (RGB PNGs, bounded noise)."""
    rng = np.random.default_rng(0)
    label_feature = Value("int64") if int_labels else ClassLabel(names=NAMES)
    train_labels = [c for c in range(len(NAMES)) for _ in range(PER_CLASS_TRAIN)]
    test_labels = [c for c in range(len(NAMES)) for _ in range(PER_CLASS_TEST)]
    train_images = [grey_image(c, rng, size) for c in train_labels]
    clean = DatasetDict(
        train=split(train_labels, train_images, label_feature),
        test=split(test_labels, [grey_image(c, rng, size) for c in test_labels], label_feature),
    )
    noisy = []
    for image in train_images:
        array = np.asarray(image.convert("RGB"), dtype=np.int16) + rng.integers(-16, 17, (size, size, 3))
        noisy.append(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="RGB"))
    protected = DatasetDict(train=split(train_labels, noisy, label_feature))
    protected["train"].info.description = protected_description
    clean.save_to_disk(str(root / "clean"))
    protected.save_to_disk(str(root / "protected"))
    return root / "clean", root / "protected"


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    description = json.dumps({"uc_datasets": {"method": "UC-CLIP", "surrogate": "tiny-clip"}})
    return make_pair(root, protected_description=description)


@pytest.fixture(scope="module")
def sweep(pair, tmp_path_factory):
    clean, protected = pair
    out = tmp_path_factory.mktemp("out")
    args = parse(["--clean", clean, "--protected", protected, "--n-range", 2, 3,
                  "--protected-fraction", 0.0, 0.5, 1.0, "--output-dir", out, *TINY])
    return run_evaluate(args), out


# --- the sweep and its outputs --------------------------------------------------------------


def test_rows_schema(sweep):
    results, _ = sweep
    rows = results["rows"]
    assert len(rows) == 3 * 3  # (original, n=2, n=3) x fractions (0, 0.5, 1)
    for row in rows:
        assert set(row) == set(ROW_KEYS)
        assert row["dataset"] == "clean"
        assert (row["method"], row["surrogate"]) == ("UC-CLIP", "tiny-clip")
        assert (row["victim"], row["width"], row["epochs"], row["defense"], row["seed"]) == (
            "resnet18", 0.0625, 1, "none", 0)
        for key in ("clean_acc", "protected_acc", "chance"):
            assert 0.0 <= row[key] <= 1.0
    assert Counter((r["relabel"], r["n_classes"]) for r in rows) == {
        ("original", 6): 3, ("minilm-kmeans", 2): 3, ("minilm-kmeans", 3): 3}  # --encoder offline: MiniLM
    assert sorted({r["protected_fraction"] for r in rows}) == [0.0, 0.5, 1.0]


def test_chance_and_scores_are_consistent(sweep):
    results, _ = sweep
    relabelings = results["config"]["relabelings"]
    test_labels = [c for c in range(len(NAMES)) for _ in range(PER_CLASS_TEST)]
    for row in results["rows"]:
        mapping = relabelings[str(row["n_classes"])]["mapping"]
        counts = Counter(mapping[label] for label in test_labels)
        assert row["chance"] == max(counts.values()) / len(test_labels)
        if row["clean_acc"] > row["chance"]:
            expected = (row["protected_acc"] - row["chance"]) / (row["clean_acc"] - row["chance"])
            assert row["protection_score"] == pytest.approx(expected)
        else:
            assert row["protection_score"] is None
        if row["protected_fraction"] == 0.0:
            assert row["protected_acc"] == row["clean_acc"]  # nothing protected: the clean run


def test_relabelling_recorded_in_config(sweep):
    config = sweep[0]["config"]
    assert config["relabelings"]["3"]["groups"] == ["apple | banana", "car | truck", "dog | cat"]
    assert config["relabelings"]["3"]["mapping"] == [0, 0, 1, 1, 2, 2]
    assert config["relabelings"]["6"]["method"] == "original"
    assert config["class_names"] == NAMES
    assert (config["num_train"], config["num_test"], config["image_size"]) == (48, 24, 8)
    assert config["encoder"] == "offline" and config["width"] == 0.0625


def test_files_written(sweep):
    results, out = sweep
    assert results["outputs"] == {
        "results_json": str(out / "results.json"), "table": str(out / "results.md"),
        "plot": str(out / "accuracy_vs_n.png")}
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == {"config": results["config"], "rows": results["rows"]}
    table = (out / "results.md").read_text().splitlines()
    assert sum(line.startswith("| resnet18 |") for line in table) == 9
    png = (out / "accuracy_vs_n.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


# --- the recipe, run as a script ------------------------------------------------------------


def test_recipe_runs_with_plain_python(tmp_path):
    clean, protected = make_pair(tmp_path, int_labels=True)
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "recipes" / "evaluate_protection.py"), "--clean", clean, "--protected", protected,
               "--class-names", *NAMES, "--n-range", 3, 3, "--no-original", "--method", "UC",
               "--surrogate", "efficientnet-lite0", "--output-dir", out, *TINY]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"results_json: {out / 'results.json'}" in done.stdout
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["relabel"], r["n_classes"], r["method"], r["surrogate"]) for r in rows] == [
        ("minilm-kmeans", 3, "UC", "efficientnet-lite0")]  # --encoder offline
    assert (out / "accuracy_vs_n.png").is_file() and (out / "results.md").is_file()


# --- bad input ------------------------------------------------------------------------------


def save(ds, path: Path) -> Path:
    ds.save_to_disk(str(path))
    return path


def test_mismatched_lengths(pair, tmp_path):
    clean, protected = pair
    short = save(DatasetDict.load_from_disk(str(protected))["train"].select(range(47)), tmp_path / "short")
    with pytest.raises(ValueError, match="47 rows but the clean train split has 48.*row by row"):
        run_evaluate(parse(["--clean", clean, "--protected", short, *TINY]))


def test_misaligned_labels(pair, tmp_path):
    clean, protected = pair
    shuffled = DatasetDict.load_from_disk(str(protected))["train"].shuffle(seed=0)
    with pytest.raises(ValueError, match="differ first at row"):
        run_evaluate(parse(["--clean", clean, "--protected", save(shuffled, tmp_path / "shuffled"), *TINY]))


def test_missing_columns_and_splits(pair):
    clean, protected = pair
    with pytest.raises(ValueError, match="Image column 'img' not found.*--image-column"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--image-column", "img", *TINY]))
    with pytest.raises(ValueError, match="Label column 'target' not found"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--label-column", "target", *TINY]))
    with pytest.raises(ValueError, match="no split 'validation'.*--test-split"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--test-split", "validation", *TINY]))


def test_n_out_of_range(pair):
    clean, protected = pair
    with pytest.raises(ValueError, match=r"n=9 groups: n must be in \[2, 5\]"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--n-range", 2, 9, *TINY]))
    with pytest.raises(ValueError, match="LOW <= HIGH"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--n-range", 4, 3, *TINY]))


def test_empty_and_single_datasets(pair, tmp_path):
    clean, protected = pair
    ds = DatasetDict.load_from_disk(str(clean))
    # (datasets cannot load_from_disk an empty split, so this one stays in memory)
    with pytest.raises(ValueError, match="clean test: the dataset is empty"):
        load_evaluation_data(DatasetDict(train=ds["train"], test=ds["test"].select([])), str(protected))
    single = save(ds["train"], tmp_path / "single")
    with pytest.raises(ValueError, match="single Dataset.*'test'"):
        run_evaluate(parse(["--clean", single, "--protected", protected, *TINY]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_evaluate(parse(["--clean", tmp_path / "nope", "--protected", protected, *TINY]))


def test_plain_int_labels_need_class_names(tmp_path):
    clean, protected = make_pair(tmp_path, int_labels=True)
    with pytest.raises(ValueError, match="--class-names"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, *TINY]))


def test_different_image_sizes_need_image_size(pair, tmp_path):
    clean, _ = pair
    _, big = make_pair(tmp_path, size=16)
    with pytest.raises(ValueError, match="--image-size"):
        run_evaluate(parse(["--clean", clean, "--protected", big, *TINY]))


def test_bad_options(pair):
    clean, protected = pair
    with pytest.raises(ValueError, match="protected fraction must be in"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--protected-fraction", 1.5, *TINY]))
    with pytest.raises(ValueError, match="Unknown defence"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--defenses", "blur", *TINY]))
    with pytest.raises(ValueError, match="Unknown victim"):
        run_evaluate(parse(["--clean", clean, "--protected", protected, "--victims", "vit", *TINY]))


# --- best-epoch accuracy and pseudo-labels -----------------------------------------------------


def test_best_epoch_scores_are_at_least_the_final_ones(sweep):
    results, _ = sweep
    for row in results["rows"]:
        assert row["protected_acc_best"] >= row["protected_acc"]
        assert row["clean_acc_best"] >= row["clean_acc"]
        if row["protection_score_best"] is not None:
            expected = (row["protected_acc_best"] - row["chance"]) / (row["clean_acc_best"] - row["chance"])
            assert row["protection_score_best"] == pytest.approx(expected)


def test_score_epochs_picks_the_best_epoch_and_scores_it_against_the_clean_best():
    refs = [0, 1, 1, 0]
    per_epoch = [torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 0, 0]), torch.tensor([1, 0, 0, 0])]
    clean = {"accuracy": 0.75, "accuracy_best": 1.0}
    s = score_epochs(per_epoch, refs, clean)
    assert (s["accuracy"], s["accuracy_best"], s["best_epoch"], s["chance"]) == (0.25, 1.0, 1, 0.5)
    assert s["protection_score"] == pytest.approx(-1.0)  # (0.25 - 0.5) / (0.75 - 0.5): below chance
    assert s["protection_score_best"] == pytest.approx(1.0)  # (1.0 - 0.5) / (1.0 - 0.5): best vs clean best
    with pytest.raises(ValueError, match="at least one epoch"):
        score_epochs([], refs)


def test_a_step_resolved_curve_finds_a_peak_that_the_epoch_ends_miss():
    """Four points in the first epoch: the best is mid-epoch, which a per-epoch evaluation cannot
    see; it is scored against the clean victim's own step-resolved best."""
    refs = [0, 1, 1, 0]
    right, wrong = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 0, 0, 1])
    half = torch.tensor([0, 1, 0, 1])
    preds = [half, right, half, wrong, half, half]  # steps 1..4 (epoch 1), then the ends of epochs 2, 3
    s = score_epochs(preds, refs, steps=[1, 2, 3, 4, 8, 12], steps_per_epoch=4)
    assert s["accuracy_best"] == 1.0 and s["best_step"] == 2 and s["best_epoch"] == 1
    assert s["accuracy_per_epoch"] == [0.0, 0.5, 0.5] and s["accuracy_best_epoch_end"] == 0.5
    assert s["accuracy_per_step"] == [0.5, 1.0, 0.5, 0.0, 0.5, 0.5] and s["eval_steps"] == [1, 2, 3, 4, 8, 12]
    clean = {"accuracy": 1.0, "accuracy_best": 1.0, "accuracy_best_epoch_end": 0.75}
    scored = score_epochs(preds, refs, clean, steps=[1, 2, 3, 4, 8, 12], steps_per_epoch=4)
    assert scored["protection_score_best"] == pytest.approx(1.0)  # (1.0 - 0.5) / (1.0 - 0.5)
    assert scored["protection_score_best_epoch_end"] == pytest.approx(0.0)  # (0.5 - 0.5) / (0.75 - 0.5)
    with pytest.raises(ValueError, match="one step per point"):
        score_epochs(preds, refs, steps=[1, 2])


def test_train_and_score_records_several_points_an_epoch_and_scores_the_best(tmp_path):
    from uc_datasets.evaluation.sweep import train_and_score
    from uc_datasets.evaluation.victims import TrainConfig

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(32) % 2
    s = train_and_score("resnet18", x, y, 2, x, y.tolist(), TrainConfig(epochs=3, batch_size=8), width=0.125,
                        progress=False, evals_per_epoch=2, early_epochs=2)
    assert s["eval_steps"] == [2, 4, 6, 8, 12] and s["steps_per_epoch"] == 4
    assert len(s["accuracy_per_step"]) == 5 and len(s["accuracy_per_epoch"]) == 3
    assert s["accuracy_best"] == pytest.approx(max(s["accuracy_per_step"]), abs=1e-4)
    assert s["accuracy_per_epoch"] == [s["accuracy_per_step"][i] for i in (1, 3, 4)]
    plain = train_and_score("resnet18", x, y, 2, x, y.tolist(), TrainConfig(epochs=3, batch_size=8), width=0.125,
                            progress=False)
    assert "eval_steps" not in plain and plain["accuracy_per_epoch"] == s["accuracy_per_epoch"]


def test_pseudo_label_rows(pair, tmp_path):
    clean, protected = pair
    args = parse(["--clean", clean, "--protected", protected, "--n-range", 2, 2, "--no-original",
                  "--pseudo-labels", 3, "--epochs", 2, "--output-dir", tmp_path, *TINY[:-3], "--no-progress"])
    results = run_evaluate(args)
    pseudo = [r for r in results["rows"] if r["relabel"].startswith("pseudo")]
    assert len(pseudo) == 1 and pseudo[0]["relabel"] == "pseudo-kmeans(pixels-pca)" and pseudo[0]["n_classes"] == 3
    assert set(pseudo[0]) == set(ROW_KEYS)
    info = results["config"]["relabelings"]
    assert info["pseudo-3-clean"]["n_groups"] == 3 and sum(info["pseudo-3-clean"]["sizes"]) == 6 * PER_CLASS_TRAIN
    assert "pseudo-3-protected-1-seed0" in info
    # The same run again gives the same labels and rows (seeded K-means, seeded victims).
    again = run_evaluate(args)
    assert again["config"]["relabelings"]["pseudo-3-clean"] == info["pseudo-3-clean"]
    assert again["rows"][-1]["protected_acc"] == results["rows"][-1]["protected_acc"]


def test_simclr_rows(pair, tmp_path):
    clean, protected = pair
    args = parse(["--clean", clean, "--protected", protected, "--n-range", 2, 2, "--no-original",
                  "--protected-fraction", 0.0, 1.0, "--simclr-epochs", 1, "--simclr-batch-size", 16,
                  "--output-dir", tmp_path, *TINY])
    rows = run_evaluate(args)["rows"]
    simclr = [r for r in rows if r["victim"] == "simclr-resnet18"]
    assert [r["protected_fraction"] for r in simclr] == [0.0, 1.0]
    for row in simclr:
        assert set(row) == set(ROW_KEYS)
        assert (row["relabel"], row["n_classes"], row["defense"]) == ("original", len(NAMES), "none")
        assert row["chance"] == pytest.approx(1 / len(NAMES))
        assert row["protected_acc_best"] is None and row["protection_score_best"] is None
    assert simclr[0]["protected_acc"] == simclr[0]["clean_acc"]  # fraction 0: the clean encoder
    table = (tmp_path / "results.md").read_text()
    assert "simclr-resnet18" in table


# --- bad inputs: refused before any victim trains; finished rows survive a failure ----------


def _no_training(monkeypatch):
    import uc_datasets.evaluation.sweep as sweep_module

    def fail(*args, **kwargs):
        raise AssertionError("a victim trained before the bad input was refused")

    monkeypatch.setattr(sweep_module, "train_and_score", fail)


def test_pseudo_labels_above_the_training_images_are_refused_before_training(pair, tmp_path, monkeypatch):
    clean, protected = pair
    _no_training(monkeypatch)
    args = parse(["--clean", clean, "--protected", protected, "--n-range", 2, 2, "--pseudo-labels", 3, 500,
                  "--output-dir", tmp_path, *TINY])
    with pytest.raises(ValueError, match=r"--pseudo-labels 500: K-means cannot make more groups than the 48 "
                                         r"training images"):
        run_evaluate(args)


def test_a_pseudo_encoder_too_big_for_the_images_is_refused_before_training(pair, tmp_path, monkeypatch):
    clean, protected = pair  # 8x8 images: EfficientNet-Lite0's stride-32 stack runs out of pixels
    _no_training(monkeypatch)
    args = parse(["--clean", clean, "--protected", protected, "--n-range", 2, 2, "--pseudo-labels", 3,
                  "--pseudo-encoder", "efficientnet-lite0", "--output-dir", tmp_path, *TINY])
    with pytest.raises(ValueError, match=r"pseudo-label encoder 'efficientnet-lite0' \(--pseudo-encoder\) failed "
                                         r"on the training images \(8 px\).*pixels-pca.*--image-size"):
        run_evaluate(args)


def test_a_failure_mid_sweep_keeps_the_finished_rows(pair, tmp_path, monkeypatch):
    import uc_datasets.evaluation.sweep as sweep_module

    clean, protected = pair
    real, calls = sweep_module.train_and_score, []

    def third_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "train_and_score", third_fails)
    args = parse(["--clean", clean, "--protected", protected, "--n-range", 2, 2, "--output-dir", tmp_path, *TINY])
    with pytest.raises(RuntimeError, match="simulated"):
        run_evaluate(args)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rows"]) == 1 and saved["rows"][0]["relabel"] == "original"  # clean + protected: one row
    assert "simulated" in saved["config"]["incomplete"]
    assert "| original |" in (tmp_path / "results.md").read_text()


def test_uc_datasets_evaluate_records_the_step_resolved_curve(pair, tmp_path):
    clean, protected = pair
    args = parse(["--clean", clean, "--protected", protected, "--n-range", 2, 2, "--no-original", *TINY,
                  "--epochs", 2, "--batch-size", 4, "--evals-per-epoch", 3, "--early-epochs", 1, "--output-dir", tmp_path])
    rows = run_evaluate(args)["rows"]
    for r in rows:
        assert len(r["protected_acc_per_epoch"]) == 2 and len(r["eval_steps"]) > 2, r["eval_steps"]  # points inside epoch 1
    assert all(r["protected_acc_best"] == pytest.approx(max(r["protected_acc_per_step"]), abs=1e-4) for r in rows)
