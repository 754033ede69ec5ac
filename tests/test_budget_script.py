"""benchmarks/budget.py (UC fit budget ablation) runs end to end at smoke size.

Needs Fashion-MNIST from the Debian package (``apt-get install -y dataset-fashion-mnist``) and
the offline EfficientNet-Lite0 surrogate, like the other benchmark smoke tests.
"""

from __future__ import annotations

import json

from tests.benchmark_support import bench as _bench
from tests.benchmark_support import require_benchmark_data, run_main

require_benchmark_data()


def test_budget_smoke_fits_each_multiplier_and_scores_every_labelling(tmp_path, capsys):
    budget = _bench("budget")
    from uc_datasets.evaluation.sweep import ROW_KEYS

    out = tmp_path / "b.json"
    returned = run_main(budget, ["--profile", "smoke", "--multipliers", "1", "2", "--no-progress",
                                 "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(returned))
    config, rows, fits = saved["config"], saved["rows"], saved["fits"]
    assert config["status"] == "complete" and config["command"] and config["machine"]["torch"]
    assert config["multipliers"] == [1, 2] and config["mode"] == "budget"

    ns = {10, 5, 2}
    assert {(r["budget_multiplier"], r["n_classes"]) for r in rows} == {(m, n) for m in (1, 2) for n in ns}
    assert len(rows) == 2 * len(ns)  # each victim once
    assert all(set(ROW_KEYS) <= set(r) and "error" not in r for r in rows)
    assert all(r["method"] == f"UC x{r['budget_multiplier']}" for r in rows)
    assert all(0 <= r["attack_success"] <= 1 and 0 <= r["protected_acc"] <= 1 for r in rows)
    for n in ns:  # one clean victim per labelling, shared by both budgets
        assert len({r["clean_acc"] for r in rows if r["n_classes"] == n}) == 1

    one, two = fits["UC x1"], fits["UC x2"]
    assert two["fit_epochs"] == 2 * one["fit_epochs"] == 2 * budget.PROFILES["smoke"].fit_epochs
    assert two["config"]["epochs"] == 2 * one["config"]["epochs"]
    assert two["surrogate_fwd_bwd_passes"] == 2 * one["surrogate_fwd_bwd_passes"]
    assert one["config"]["seed"] == two["config"]["seed"] == 0
    assert all(0 <= f["attack_success"] <= 1 and f["verify"]["passed"] for f in (one, two))

    printed = capsys.readouterr().out
    assert "| multiplier | fit epochs |" in printed and "| UC x2 |" in printed
