"""Why do label-consistent EMinN and SynPer not protect in the strength benchmark? A diagnostic.

Fits the label-consistent (true labels) baselines exactly as ``_workload.py --baselines`` does
at the cpu profile (same data, settings and seeds), then trains the same ResNet-18 victims
with and without the crop + flip augmentation, on clean and on protected images, and tests
them on the clean test split (original 10 classes). If a method protects without
augmentation but not with it, the victims' augmentation is what removes it.

    python benchmarks/augmentation_check.py                    # eminn and synper, about 8 min on 1 thread
    python benchmarks/augmentation_check.py --methods advpoison

Writes ``benchmarks/results/augmentation_check.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import gc
import time

import _common
import _workload
from _baselines import ALL_BASELINES, fit_baseline


def main(argv: list[str] | None = None) -> dict:
    """Fit each method label-consistent, train victims with/without augmentation; return the rows."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["eminn", "synper"], choices=ALL_BASELINES)
    p.add_argument("--profile", choices=sorted(_workload.PROFILES), default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default=str(_common.RESULTS_DIR / "augmentation_check.json"))
    args = p.parse_args(argv)
    _common.setup(args.threads)

    profile = _workload.PROFILES[args.profile]
    train_ds, sets = _workload.load_data(profile)
    runner, t0 = _workload.victim_runner(profile, sets, progress=False), time.perf_counter()
    test_y = sets.test_labels.tolist()
    clean = {aug: runner.accuracy(sets.clean, sets.labels, 10, "none", 0, test_y, augment=aug)
             for aug in ("none", "crop")}
    rows = []
    for method in args.methods:
        images, record = fit_baseline(method, train_ds, consistent=True,
                                      settings=_workload.profile_baseline_settings(method, profile),
                                      epsilon=_workload.EPSILON, progress=False)
        for aug in ("none", "crop"):
            result = runner.accuracy(images, sets.labels, 10, "none", 0, test_y, clean=clean[aug], augment=aug)
            rows.append({"method": f"{method} (true labels)", "victim_augment": aug,
                         "clean_acc": clean[aug]["accuracy"],
                         "protected_acc": result["accuracy"], "chance": result["chance"],
                         "protection_score": result["protection_score"],
                         "protected_acc_best": result["accuracy_best"],
                         "protection_score_best": result["protection_score_best"],
                         "fit_stats": {k: v for k, v in (record["stats"] or {}).items() if k != "seconds"}})
    gc.unfreeze()  # VictimRunner froze the long-lived objects out of the collector
    table = _common.markdown_table(
        ["train set", "victim augmentation", "clean acc %", "protected acc %", "score"],
        [[r["method"], r["victim_augment"], f"{100 * r['clean_acc']:.1f}", f"{100 * r['protected_acc']:.1f}",
          "n/a" if r["protection_score"] is None else f"{r['protection_score']:.2f}"] for r in rows])
    print(table)
    payload = {"config": {**_common.run_record(), "profile": args.profile, "methods": args.methods,
                          "victim_width": profile.victim_width, "victim_epochs": profile.victim_epochs,
                          "total_seconds": time.perf_counter() - t0}, "rows": rows}
    _common.write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
