"""The benchmark scripts (strength, speed, reference schedule) run end to end at smoke size.

Fashion-MNIST comes from the Debian package (``apt-get install -y dataset-fashion-mnist``);
the surrogate is the offline EfficientNet-Lite0. The strength script runs in this process,
the speed script as a subprocess (it starts its own child processes, as a user runs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.benchmark_support import BENCH, ROOT, require_benchmark_data, run_main
from tests.benchmark_support import bench as _bench
from uc_datasets.evaluation.comparison import VictimRunner
from uc_datasets.evaluation.controls import CONTROLS, CONTROLS_N10
from uc_datasets.evaluation.plots import plot_scores
from uc_datasets.evaluation.tables import attacker_label

require_benchmark_data()


def _check_record(config: dict) -> None:
    assert config["command"] and config["date"]
    machine = config["machine"]
    for key in ("platform", "cpu_count", "torch", "device", "uc_datasets"):
        assert machine[key], key


@pytest.fixture(scope="module")
def strength_results(tmp_path_factory):
    strength = _bench("strength")
    out = tmp_path_factory.mktemp("strength") / "strength.json"
    returned = strength.main(["--profile", "smoke", "--baselines", "--no-progress", "--output", str(out)])
    return strength, json.loads(out.read_text()), returned


def test_strength_smoke_rows_follow_the_results_schema(strength_results):
    strength, saved, returned = strength_results
    from uc_datasets.evaluation.sweep import ROW_KEYS

    profile = strength.PROFILES["smoke"]
    config, rows = saved["config"], saved["rows"]
    _check_record(config)
    assert config["status"] == "complete" and returned["rows"] == rows
    la = strength.LABEL_AWARE
    assert config["fits"]["0"]["UC"]["verify"]["passed"] and config["fits"]["0"][la]["verify"]["passed"]
    assert config["kmeans_reproduces_fit_clusters"] is True
    assert all(set(ROW_KEYS) <= set(r) and "error" not in r for r in rows)
    assert all(0 <= r["clean_acc"] <= 1 and 0 <= r["protected_acc"] <= 1 for r in rows)
    every = {"UC", la, *CONTROLS, *profile.baselines}
    at_10 = {*CONTROLS_N10, *(b + strength.CONSISTENT for b in profile.baselines)}
    plain = [r for r in rows if r["defense"] == "none"]
    expected_n = {10, *profile.n_values}
    assert {(r["method"], r["n_classes"]) for r in plain} == {(m, n) for m in every for n in expected_n} | {
        (m, 10) for m in at_10}
    assert len(plain) == len(every) * len(expected_n) + len(at_10)  # each victim once
    fits = config["baseline_fits"]
    assert set(fits) == {b + s for b in profile.baselines for s in ("", strength.CONSISTENT)}
    assert all(f["verify"]["passed"] for f in fits.values())
    assert {f["label_source"] for f in fits.values()} == {"surrogate", "dataset"}
    defended = {r["defense"] for r in rows if r["defense"] != "none"}
    assert defended == set(_bench("_workload").PAPER_DEFENSES) and all(
        r["n_classes"] == 10 and r["method"] in ("UC", la) for r in rows if r["defense"] != "none")
    for r in plain:
        if r["method"] == "UC":
            assert r["p"] == profile.n_clusters and 0 <= r["nmi"] <= 1 and 0 < r["cluster_rule_acc"] <= 1
        if r["method"] in ("random-per-class", "sign-per-class", la):  # the true classes determine every labelling
            assert r["cluster_rule_acc"] == 1.0
        if r["method"] == "random-per-image":
            assert r["nmi"] is None and r["p"] == profile.n_train
    agreement = saved["cluster_agreement"]
    assert {(a["p"], a["n_classes"]) for a in agreement} == {(p, n) for p in profile.agreement_ps for n in expected_n}
    original_p = [a for a in agreement if a["p"] == profile.n_clusters and a["n_classes"] == 10]
    uc_original = next(r for r in plain if r["method"] == "UC" and r["n_classes"] == 10)
    assert original_p[0]["nmi"] == pytest.approx(uc_original["nmi"])


def test_strength_more_seeds_refit_and_merge(strength_results, tmp_path):
    strength, saved, _ = strength_results
    first = tmp_path / "s0.json"
    first.write_text(json.dumps(saved))
    out = strength.main(["--profile", "smoke", "--seeds", "1", "--no-progress", "--output", str(tmp_path / "s1.json")])
    seed1 = out["rows"]
    assert {r["seed"] for r in seed1} == {1} and {r["defense"] for r in seed1} == {"none"}
    assert {r["method"] for r in seed1} == {"UC", strength.LABEL_AWARE, "sign-per-class"}  # no extras after seed 0
    fits = out["config"]["fits"]["1"]
    assert fits["UC"]["config"]["seed"] == 1 and fits[strength.LABEL_AWARE]["config"]["seed"] == 1
    merged = strength.main(["--merge", str(first), str(tmp_path / "s1.json"), "--output", str(tmp_path / "m.json")])
    assert merged["config"]["seeds"] == [0, 1] and len(merged["rows"]) == len(saved["rows"]) + len(seed1)
    assert set(merged["config"]["fits"]) == {"0", "1"}
    # a merge of a merge keeps its sources; --rename swaps two method names in rows and fits
    swapped = strength.main(["--merge", str(tmp_path / "m.json"), "--output", str(tmp_path / "r.json"), "--rename",
                             f"UC={strength.LABEL_AWARE}", f"{strength.LABEL_AWARE}=UC"])
    assert [m["path"] for m in swapped["config"]["merged_from"]] == [str(first), str(tmp_path / "s1.json")]
    before = [(r["method"], r["n_classes"], r["protected_acc"]) for r in merged["rows"]]
    swap = {"UC": strength.LABEL_AWARE, strength.LABEL_AWARE: "UC"}
    assert [(r["method"], r["n_classes"], r["protected_acc"]) for r in swapped["rows"]] == [
        (swap.get(m, m), n, a) for m, n, a in before]
    assert swapped["config"]["fits"]["1"]["UC"] == merged["config"]["fits"]["1"][strength.LABEL_AWARE]


def test_screen_smoke(tmp_path):
    screen = _bench("screen")
    out = tmp_path / "screen.json"
    screen.main(["--profile", "smoke", "--screen", "--no-progress", "--output", str(out), "--variants",
                   "UC:tile", "UC (label-aware):tile,levels=5+2 (names)"])
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert saved["config"]["scored_on"].startswith("validation") and saved["config"]["status"] == "complete"
    assert {r["variant"] for r in rows} == {"UC:tile", "UC (label-aware):tile,levels=5+2 (names)"}
    assert {r["method"] for r in rows} == {"UC", "UC (label-aware)"}
    la = [r for r in rows if r["method"] == "UC (label-aware)"]
    assert all(r["cluster_rule_acc"] == 1.0 for r in la)  # the key refines every class
    fit = saved["config"]["fits"]["UC (label-aware):tile,levels=5+2 (names)"]
    assert fit["verify"]["passed"] and len(fit["key_levels"]) == 2


def test_attack_screen_smoke(tmp_path):
    strength, screen = _bench("strength"), _bench("screen")
    out = tmp_path / "attack_screen.json"
    picked = ("tile", "block", "tile-code")  # every attacker but the costly crafted variants
    screen.main(["--profile", "smoke", "--attack-screen", "--no-progress", "--output", str(out), "--variants",
                 *(f"UC (label-aware):{v}" for v in picked)])
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert saved["config"]["scored_on"].startswith("validation") and saved["config"]["status"] == "complete"
    cells = {(r["variant"], strength.attacker_name(r)) for r in rows if r["protection_score"] is not None}
    want = {(f"UC (label-aware):{v}", strength.SIMCLR_ATTACKER if a == "simclr" else
             attacker_label(a, 10)) for a, vs in screen.ATTACK_SCREEN.items() for v in vs if v in picked}
    assert cells == want and ("UC (label-aware):block", "jpeg n=10") in cells
    assert all(r["psnr_db"] > 20 for r in rows)
    table = strength.report(str(out))
    assert "SimCLR + linear probe" in table and "jpeg n=10" in table


def test_compare_defaults_smoke(tmp_path):
    screen = _bench("screen")
    out = tmp_path / "defaults.json"
    screen.main(["--profile", "smoke", "--compare-defaults", "--no-progress", "--output", str(out)])
    saved = json.loads(out.read_text())
    profile = screen.PROFILES["smoke"]
    rows, fits = saved["rows"], saved["config"]["fits"]
    names = [name for name, _ in screen.default_variants(profile)]
    all_name = f"train_on=all,epochs={max(1, profile.fit_epochs // profile.n_clusters)}"
    assert names[:4] == ["defaults", all_name, "loss=cosine", "parametrization=direct"]
    assert {r["variant"] for r in rows} == set(names) == set(fits)
    assert {r["n_classes"] for r in rows} == {10, *profile.defaults_n_values}
    assert saved["config"]["scored_on"].startswith("validation")
    assert all(r["method"] == "UC" and "attack_success" in r and "error" not in r for r in rows)
    all_fit, default_fit = fits[all_name], fits["defaults"]
    assert all_fit["config"]["train_on"] == "all" and default_fit["config"]["train_on"] == "members"
    assert all_fit["surrogate_fwd_bwd_passes"] == (profile.n_clusters * all_fit["config"]["epochs"]
                                                   * default_fit["surrogate_fwd_bwd_passes"] // profile.fit_epochs)
    assert {r["p"] for r in rows} == {profile.n_clusters, *profile.defaults_ps}
    assert all(f["verify"]["passed"] for f in fits.values())


def test_validation_subset_is_balanced_and_disjoint_from_the_train_subset():
    common = _bench("_common")
    train, val = common.load_balanced_fashion_mnist("train", 30), common.load_balanced_fashion_mnist("train", 30, 30)
    assert sorted(val["label"]) == sorted(train["label"]) == sorted(list(range(10)) * 3)
    as_bytes = lambda ds: {np.asarray(im).tobytes() for im in ds["image"]}  # noqa: E731
    assert not as_bytes(train) & as_bytes(val)


def test_reference_schedule_trains_each_cluster_on_every_image():
    reference = _bench("reference_schedule")
    common = _bench("_common")
    from uc_datasets.core.surrogates import load_surrogate

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 28, 28)
    a = reference.reference_augment(x, gen)
    b = reference.reference_augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    ds = common.load_balanced_fashion_mnist("train", 10)
    result = reference.fit_reference(ds, surrogate=load_surrogate("efficientnet-lite0", image_size=32),
                                     n_clusters=2, epsilon=8 / 255, epochs=1, batch_size=4, ngf=4, n_blocks=1,
                                     progress=False)
    assert result.stats["surrogate_fwd_bwd_passes"] == 2 * 10  # p clusters x every image x 1 epoch
    assert result.deltas.shape == (2, 3, 28, 28) and float(result.deltas.abs().max()) <= 8 / 255 + 1e-6
    assert [len(c) for c in result.loss_curves] == [1, 1] and result.permutation.tolist() == [1, 0]
    assert 0 <= result.stats["attack_success"] <= 1


def test_speed_smoke_subprocess(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--profile", "smoke", "--threads", "1",
                           "--no-progress", "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| fit |" in proc.stdout and "| protect |" in proc.stdout
    saved = json.loads(out.read_text())
    _check_record(saved)
    prof = saved["settings"]
    fit, protect, ratios = saved["fit"], saved["protect"], saved["ratios"]
    assert all("error" not in r for r in [*fit.values(), *protect.values()]), (fit, protect)
    n, p, e = prof["n_images"], prof["n_clusters"], prof["epochs"]
    assert fit["library"]["surrogate_fwd_bwd_passes"] == n * e
    assert fit["library_all"]["surrogate_fwd_bwd_passes"] == fit["reference"]["surrogate_fwd_bwd_passes"] == p * n * e
    for r in fit.values():
        assert r["wall_seconds"] > 0 and r["surrogate_fwd_bwd_per_second"] > 0 and r["peak_rss_mib"] > 100
    for r in protect.values():
        assert r["seconds"] > 0 and r["peak_rss_mib"] >= r["rss_before_mib"] > 0
    assert ratios["same_clusters_library_and_reference"] is True
    assert ratios["cached_and_recomputed_outputs_identical"] is True
    assert ratios["fit_wall_reference_over_library"] > 0 and ratios["map_cached_over_plain_seconds"] > 0


def test_report_reprints_the_tables_of_a_saved_run(strength_results, tmp_path):
    strength, saved, _ = strength_results
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved))
    text = strength.main(["--report", str(path)])["report"]
    pivot = text.split("\n\n")[0].splitlines()
    n_values = [10, *strength.PROFILES["smoke"].n_values]
    assert pivot[0] == "| method \\ n | " + " | ".join(map(str, n_values)) + " |"
    uc = next(line for line in pivot if line.startswith("| UC |")).split(" | ")
    uc_rows = {r["n_classes"]: r for r in saved["rows"] if r["method"] == "UC" and r["defense"] == "none"}
    # best-epoch first: "best score / final score (best acc % / final acc %)"
    assert uc[1].endswith(f" / {100 * uc_rows[10]['protected_acc']:.1f})")
    best = uc_rows[10]["protection_score_best"]
    assert uc[1].startswith("n/a / " if best is None else f"{best:.2f} / ")
    assert any(line.startswith("| eminn (true labels) |") for line in pivot)


def test_augmentation_check_smoke(tmp_path):
    check = _bench("augmentation_check")
    out = run_main(check, ["--profile", "smoke", "--methods", "synper", "--threads", "1", "--output",
                           str(tmp_path / "a.json")])
    rows = out["rows"]
    assert [(r["method"], r["victim_augment"]) for r in rows] == [("synper (true labels)", "none"),
                                                                 ("synper (true labels)", "crop")]
    assert all(0 <= r["protected_acc"] <= 1 and r["chance"] == 0.1 for r in rows)
    assert json.loads((tmp_path / "a.json").read_text())["rows"] == rows


def test_fit_cost_smoke_covers_every_family(tmp_path):
    fit_cost = _bench("fit_cost")
    out = run_main(fit_cost, ["--profile", "smoke", "--threads", "1", "--output", str(tmp_path / "fc.json")])
    rows = out["rows"]
    assert {r["family"] for r in rows} == set(fit_cost.FAMILIES)
    for r in rows:
        assert r["fit_seconds"] > 0 and r["fit_vs_first_p"] > 0
        if r["family"] in ("tile", "ar", "block"):
            assert r["loss_points"] == 0  # drawn, not trained (a structural check: timings are noisy)
        else:
            assert r["loss_points"] > 0


def test_strength_plot_from_a_saved_run(strength_results, tmp_path):
    strength, saved, _ = strength_results
    path = plot_scores(saved["rows"], tmp_path / "s.png")
    assert path.stat().st_size > 5_000 and path.read_bytes()[:4] == b"\x89PNG"


def test_strength_attackers_smoke(tmp_path):
    """--attackers: every method of the table against every attacker, one row each, with the
    best-epoch keys on victims and the pseudo-label agreement keys; the report prints the table."""
    strength = _bench("strength")
    profile = strength.PROFILES["smoke"]
    out = tmp_path / "attackers.json"
    strength.main(["--profile", "smoke", "--attackers", "--no-progress", "--output", str(out)])
    saved = json.loads(out.read_text())
    from uc_datasets.evaluation.sweep import ROW_KEYS

    rows = saved["rows"]
    assert saved["config"]["status"] == "complete" and saved["config"]["mode"] == "attackers"
    assert all(set(ROW_KEYS) <= set(r) and "error" not in r for r in rows)
    expected = {"labels n=10", *(f"labels n={n}" for n in profile.attack_n_values), "orthogonal n=10",
                *(f"pseudo-labels n={n}" for n in profile.pseudo_n_values), "SimCLR + linear probe"}
    methods = set(strength.ATTACK_METHODS)
    assert {(strength.attacker_name(r), r["method"]) for r in rows} == {(a, m) for a in expected for m in methods}
    assert len(rows) == len(expected) * len(methods)
    for r in rows:
        if r["victim"] == "resnet18":
            assert r["protected_acc_best"] >= r["protected_acc"] and r["clean_acc_best"] >= r["clean_acc"]
        else:
            assert r["victim"] == "simclr-resnet18" and r["protected_acc_best"] is None
        if r["relabel"].startswith("pseudo"):
            assert 0 <= r["pseudo_nmi_class"] <= 1
    fit = saved["config"]["baseline_fits"][strength.BEST_BASELINE + strength.CONSISTENT]
    assert fit["verify"]["passed"]
    table = strength.report(str(out))
    assert "SimCLR + linear probe" in table and "orthogonal n=10 (best epoch)" in table


def test_speed_load_smoke_subprocess(tmp_path):
    """``speed.py --load`` at a tiny N: both ways give the same images, a killed map restarts identical."""
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--load", "--load-sizes", "32", "--output",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| mode | N |" in proc.stdout
    saved = json.loads(out.read_text())
    _check_record(saved)
    rows = saved["rows"]
    assert [(r["mode"], r["n"], r["rows"]) for r in rows] == [("map", 32, 32), ("iterable", 32, 32)], rows
    assert saved["map_and_iterable_identical"] == {"32": True}
    for r in rows:
        assert r["peak_anon_rss_total_mib"] > 50 and r["peak_rss_main_mib"] > 50
    restart = saved["restart"]
    assert restart["identical_to_uninterrupted"] is True and restart["restart_error"] is None
    assert sum(restart["cache_after_restart"]["finished_files"].values()) == 32


def test_strength_final_smoke_reads_the_best_epoch_first_and_reuses_its_cache(tmp_path, monkeypatch):
    strength = _bench("strength")
    cache, out = tmp_path / "cache", tmp_path / "final.json"
    strength.main(["--profile", "smoke", "--final", "--final-attackers", "labels", "--no-progress",
                   "--final-cache", str(cache), "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["config"]["mode"] == "final" and saved["config"]["status"] == "complete"
    methods = {r["method"] for r in saved["rows"]}
    assert methods == set(strength.FINAL_METHODS)
    for r in saved["rows"]:
        assert "protection_score_best" in r and len(r["protected_acc_per_epoch"]) == r["epochs"]
        assert r["psnr_db"] > 20 and 0 < r["ssim"] <= 1
    assert (cache / "EMinN_true_labels.pt").exists() and (cache / "clean_victims.json").exists()
    # a second run of one method loads its protected set and the clean victims from the cache
    again = tmp_path / "again.json"
    strength.main(["--profile", "smoke", "--final", "--final-attackers", "labels", "--no-progress",
                   "--final-cache", str(cache), "--final-methods", "UC", "--output", str(again)])
    first = {(r["n_classes"], r["seed"]): r for r in saved["rows"] if r["method"] == "UC"}
    for r in json.loads(again.read_text())["rows"]:
        assert r["clean_acc"] == first[(r["n_classes"], r["seed"])]["clean_acc"]
        assert r["protected_acc_per_epoch"] == first[(r["n_classes"], r["seed"])]["protected_acc_per_epoch"]
    # --final-skip leaves out what a results file already measured: UC is done, the rest is not
    rest = tmp_path / "rest.json"
    strength.main(["--profile", "smoke", "--final", "--final-attackers", "labels", "--no-progress",
                   "--final-cache", str(cache), "--final-skip", str(again), "--output", str(rest)])
    left = json.loads(rest.read_text())["rows"]
    assert {r["method"] for r in left} == set(strength.FINAL_METHODS) - {"UC"}
    assert len(left) == len(saved["rows"]) - len(first)
    # without the cache's clean victims, --final-skip rows supply them: only protected victims train
    bare = tmp_path / "bare"
    shutil.copytree(cache, bare, ignore=shutil.ignore_patterns("clean_victims.json"))
    trained = []
    real = VictimRunner.accuracy
    monkeypatch.setattr(VictimRunner, "accuracy",
                        lambda self, *a, **kw: trained.append(kw.get("clean")) or real(self, *a, **kw))
    strength.main(["--profile", "smoke", "--final", "--final-attackers", "labels", "--no-progress",
                   "--final-cache", str(bare), "--final-skip", str(again), "--output", str(tmp_path / "bare.json")])
    assert len(trained) == len(left) and all(c is not None for c in trained)
    refilled = json.loads((tmp_path / "bare.json").read_text())["rows"]
    assert [r["clean_acc_per_epoch"] for r in refilled] == [r["clean_acc_per_epoch"] for r in left]
    table = strength.report(str(out))
    assert "worst attacker" in table and "best (final)" in table


def test_eminn_check_noise_probe_reads_class_keyed_noise_and_not_random_noise():
    eminn_check = _bench("eminn_check")
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    clean = torch.randint(20, 230, (200, 3, 6, 6), generator=gen, dtype=torch.uint8)
    keyed = (clean.int() + torch.randint(-8, 9, (4, 1, 6, 6), generator=gen)[labels]).to(torch.uint8)
    random = (clean.int() + torch.randint(-8, 9, (200, 1, 6, 6), generator=gen)).to(torch.uint8)
    assert eminn_check.noise_probe(keyed, clean, labels) == 1.0
    assert eminn_check.noise_probe(random, clean, labels) < 0.5


def test_early_screen_smoke_records_step_resolved_curves(tmp_path):
    early = _bench("early")
    out = tmp_path / "early.json"
    early.main(["--profile", "smoke", "--screen", "--no-progress", "--output", str(out), "--candidates",
                "block (default)", "class-mean away", "unrolled"])
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert saved["config"]["status"] == "complete" and saved["config"]["evals_per_epoch"] == 4
    assert {r["method"] for r in rows} == {"block (default)", "class-mean away", "unrolled"}
    assert {r["n_classes"] for r in rows} == {10, 7, 5, 4}
    for r in rows:
        assert r["eval_steps"] and len(r["clean_acc_per_step"]) == len(r["eval_steps"]) == len(
            r["protected_acc_per_step"])
        assert r["epsilon"] == "16/255" and r["psnr_db"] > 0
    assert "screen score" in early.report(str(out))


def test_early_explain_frontier_and_label_free_smoke(tmp_path):
    early = _bench("early")
    early.main(["--profile", "smoke", "--explain", "--no-progress", "--output", str(tmp_path / "x.json"),
                "--candidates", "block (default)"])
    explained = json.loads((tmp_path / "x.json").read_text())["gradients"]
    assert explained[0]["ratio"] == 0.0 and explained[1]["ratio"] > 0  # the control has no perturbation part
    # a saved protected set of the same fit images gives the same gradients without a refit
    saved_set = tmp_path / "set.pt"
    torch.save({"images": early.load_data(early.PROFILES["smoke"], validation=True)[1].clean}, saved_set)
    early.main(["--profile", "smoke", "--explain", "--no-progress", "--output", str(tmp_path / "y.json"),
                "--protected", f"unchanged={saved_set}"])
    again = json.loads((tmp_path / "y.json").read_text())["gradients"]
    assert [g["method"] for g in again] == ["clean (control: no perturbation)", "unchanged"]
    assert again[1]["ratio"] == 0.0 and again[1]["clean_norm"] == explained[0]["clean_norm"]
    early.main(["--profile", "smoke", "--frontier", "--no-progress", "--output", str(tmp_path / "f.json"),
                "--frontier-families", "block (default)", "--epsilons", "8", "24"])
    rows = json.loads((tmp_path / "f.json").read_text())["rows"]
    assert {r["epsilon"] for r in rows} == {"8/255", "24/255"}
    psnr = {r["epsilon"]: r["psnr_db"] for r in rows}
    assert psnr["8/255"] > psnr["24/255"]  # a larger budget is more visible
    early.main(["--profile", "smoke", "--label-free", "--no-progress", "--output", str(tmp_path / "l.json")])
    rows = json.loads((tmp_path / "l.json").read_text())["rows"]
    assert {r["relabel"] for r in rows} == {"pseudo-kmeans(efficientnet-lite0)", "pseudo-kmeans(pixels-pca)"}


def test_label_aware_fit_timing_smoke(tmp_path):
    timing = _bench("label_aware_fit")
    result = timing.main(["--n", "20", "--smoke", "--output", str(tmp_path / "t.json")])
    assert result["phase_seconds"]["features"] == 0.0 and result["surrogate"].startswith("none")
