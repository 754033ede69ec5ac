"""The packaged unlearnability metric, loaded through evaluate.load(path) with no network."""

import ast
import doctest
import re
import socket
import sys
from pathlib import Path

import evaluate
import pytest
from huggingface_hub import metadata_load

import uc_datasets.evaluation.metrics as metrics_package
from uc_datasets.evaluation.metrics import (
    UNLEARNABILITY_METRIC_PATH,
    load_unlearnability,
)

FOLDER = Path(UNLEARNABILITY_METRIC_PATH)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def metric(no_network, tmp_path):
    return evaluate.load(UNLEARNABILITY_METRIC_PATH, keep_in_memory=True)


def test_module_layout():
    path = Path(UNLEARNABILITY_METRIC_PATH)
    script = path / f"{path.name}.py"
    assert script.is_file()
    lines = script.read_text().splitlines()
    # evaluate's module parser misreads a combined "import datasets, evaluate" line.
    assert "import datasets" in lines and "import evaluate" in lines


def test_loads_offline_through_evaluate_load(metric):
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == "unlearnability"
    assert set(metric.features) == {"predictions", "references"}


def test_exact_scores(metric):
    # chance: 3 of 4 references are class 0 -> 0.75
    result = metric.compute(predictions=[0, 0, 1, 1], references=[0, 0, 0, 1], clean_accuracy=1.0)
    assert result == {"accuracy": 0.75, "chance": 0.75, "protection_score": 0.0}
    result = metric.compute(predictions=[0, 1, 2, 2, 0], references=[0, 1, 2, 2, 1], clean_accuracy=0.8)
    assert result == {"accuracy": 0.8, "chance": 0.4, "protection_score": pytest.approx(1.0)}
    result = metric.compute(predictions=[0, 1, 0, 0], references=[0, 1, 2, 3], clean_accuracy=0.75)
    assert result["accuracy"] == 0.5 and result["chance"] == 0.25
    assert result["protection_score"] == pytest.approx((0.5 - 0.25) / (0.75 - 0.25))


def test_score_below_chance_is_negative(metric):
    result = metric.compute(predictions=[1, 1, 1, 1], references=[0, 0, 0, 1], clean_accuracy=1.0)
    assert result["accuracy"] == 0.25
    assert result["protection_score"] == pytest.approx((0.25 - 0.75) / 0.25)


def test_score_undefined_without_or_with_useless_clean_accuracy(metric):
    assert metric.compute(predictions=[0, 1], references=[0, 1])["protection_score"] is None
    result = metric.compute(predictions=[0, 1], references=[0, 0], clean_accuracy=0.5)
    assert result == {"accuracy": 0.5, "chance": 1.0, "protection_score": None}


def test_batched_adds(metric):
    metric.add_batch(predictions=[0, 1], references=[0, 1])
    metric.add_batch(predictions=[1], references=[1])
    assert metric.compute(clean_accuracy=1.0) == {"accuracy": 1.0, "chance": 2 / 3, "protection_score": 1.0}


def test_bad_inputs(metric):
    with pytest.raises(ValueError, match="clean_accuracy must be a fraction"):
        metric.compute(predictions=[0], references=[0], clean_accuracy=80.0)


def test_helper_loads_the_same_metric(no_network):
    metric = load_unlearnability()
    assert metric.compute(predictions=[2, 2], references=[2, 1])["accuracy"] == 0.5


def test_the_folder_is_a_complete_evaluate_module():
    """What ``evaluate-cli create`` lays out: the script, its card with the Space/metric YAML, requirements, app."""
    assert {p.name for p in FOLDER.iterdir() if p.is_file()} >= {"unlearnability.py", "README.md", "requirements.txt",
                                                                 "app.py"}
    meta = metadata_load(FOLDER / "README.md")
    assert meta["title"] == "Unlearnability" and meta["sdk"] == "gradio" and (FOLDER / meta["app_file"]).is_file()
    assert {"evaluate", "metric"} <= set(meta["tags"]) and "protection score" in meta["description"]
    text = (FOLDER / "README.md").read_text(encoding="utf-8")
    for section in ("# Metric Card for Unlearnability", "## Metric Description", "## How to Use", "### Inputs",
                    "### Output Values", "## Limitations and Bias", "## Citation"):
        assert section in text, section
    # every third-party module the script imports is in requirements.txt
    required = {re.split(r"[<>=~!\[ ]", line)[0].strip() for line in (FOLDER / "requirements.txt").read_text()
                .splitlines() if line.strip() and not line.startswith("#")}
    tree = ast.parse((FOLDER / "unlearnability.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - set(sys.stdlib_module_names) == required == {"datasets", "evaluate"}


def _run_examples(text: str, name: str) -> doctest.TestResults:
    test = doctest.DocTestParser().get_doctest(text, {}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    return runner.summarize(verbose=False)


def test_the_docstring_example_runs(no_network):
    metric = load_unlearnability()
    results = _run_examples(metric.inputs_description, "unlearnability inputs_description")
    assert results.attempted >= 4 and results.failed == 0


def test_the_metric_card_examples_run(no_network):
    blocks = re.findall(r"```python\n(.*?)```", (FOLDER / "README.md").read_text(encoding="utf-8"), re.S)
    results = _run_examples("\n".join(b for b in blocks if ">>>" in b), "README.md")
    assert results.attempted >= 8 and results.failed == 0


def test_the_package_doctests_run(no_network):
    assert doctest.testmod(metrics_package).failed == 0
