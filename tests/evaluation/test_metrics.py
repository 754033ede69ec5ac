"""The packaged unlearnability metric, loaded through evaluate.load(path) with no network."""

import socket
from pathlib import Path

import evaluate
import pytest

from uc_datasets.evaluation.metrics import (
    UNLEARNABILITY_METRIC_PATH,
    load_unlearnability,
)


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
