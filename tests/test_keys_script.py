"""benchmarks/keys.py (key purity study) runs end to end at smoke size.

Needs Fashion-MNIST from the Debian package (``apt-get install -y dataset-fashion-mnist``) and
the offline EfficientNet-Lite0 surrogate, like the other benchmark smoke tests.
"""

from __future__ import annotations

import json

import numpy as np

from tests.benchmark_support import bench as _bench
from tests.benchmark_support import require_benchmark_data, run_main

require_benchmark_data()


def test_keys_smoke_scores_every_method_p_and_labelling(tmp_path, capsys):
    keys = _bench("keys")
    out = tmp_path / "k.json"
    returned = run_main(keys, ["--profile", "smoke", "--threads", "1", "--no-progress", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(returned))
    config, rows = saved["config"], saved["rows"]
    assert config["status"] == "complete" and config["command"] and config["machine"]["torch"]
    assert config["test_split_used"] is False

    profile = keys.PROFILES["smoke"]
    assert config["n_images"] == profile.n_train and config["class_counts"] == [profile.n_train // 10] * 10
    ns = {10, *profile.n_values}
    methods = [*keys.KMEANS_METHODS, *(f"{keys.SELF_LABEL}-r{r + 1}" for r in range(profile.rounds))]
    expected = {(m, p, n) for m in methods for p in profile.ps for n in ns}
    assert {(r["method"], r["p"], r["n_classes"]) for r in rows} == expected
    assert len(rows) == len(expected)  # each once
    for r in rows:
        assert set(r) == {"method", "p", "n_keys", "n_classes", "relabel", "nmi", "rule_acc", "seconds"}
        assert 0.0 <= r["nmi"] <= 1.0 + 1e-9 and 0.0 < r["rule_acc"] <= 1.0
        assert 1 <= r["n_keys"] <= r["p"] and r["seconds"] >= 0
        assert r["relabel"] == ("original" if r["n_classes"] == 10 else "bert-kmeans")
        # balanced classes: every key's majority class holds at least a tenth of it
        assert r["rule_acc"] >= 0.1 - 1e-9
    by = {(r["method"], r["p"], r["n_classes"]): r for r in rows}
    for (m, p, n), r in by.items():
        # every relabelling merges whole classes, so the coarser rule is never worse
        assert r["rule_acc"] >= by[(m, p, 10)]["rule_acc"] - 1e-9
        if m == "kmeans":  # 100 images, p <= 8: no empty K-means cluster
            assert r["n_keys"] == p

    printed = capsys.readouterr().out
    assert "purity" in printed.lower() and all(m in printed for m in methods)
    separators = sum(line.startswith("| --- |") for line in printed.splitlines())
    assert separators == 1 + len(profile.ps)  # table (a), and (b) for each smoke p


def test_merge_small_moves_whole_small_clusters_to_the_nearest_big_centre():
    keys = _bench("keys")
    centres = np.array([[0.0], [1.0], [10.0], [12.0]])
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 3])  # clusters 1 and 3 have one member each
    merged = keys.merge_small(centres, labels, 2)
    assert merged.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert keys.merge_small(centres, labels, 1).tolist() == [0, 0, 0, 1, 2, 2, 2, 3]  # nothing small
    assert keys.canonical(np.array([3, 3, 1])).tolist() == [0, 0, 1]
