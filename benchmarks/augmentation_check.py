"""Why do label-consistent EMinN and SynPer not protect in the strength benchmark? A diagnostic.

Fits the label-consistent (true labels) baselines exactly as ``strength.py --baselines`` does
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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import strength
from _baselines import BASELINES, baseline_settings, fit_baseline


def main(argv: list[str] | None = None) -> dict:
    """Fit each method label-consistent, train victims with/without augmentation; return the rows."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["eminn", "synper"], choices=BASELINES)
    p.add_argument("--profile", choices=sorted(strength.PROFILES), default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default=str(_common.RESULTS_DIR / "augmentation_check.json"))
    args = p.parse_args(argv)
    _common.setup(args.threads)
    import torch

    from uc_datasets.victims import TrainConfig, build_victim, predict, train_victim

    profile = strength.PROFILES[args.profile]
    train_ds, sets = strength.load_data(profile)
    t0 = time.perf_counter()
    chance = float(torch.bincount(sets.test_labels).max()) / len(sets.test_labels)  # majority-class rate

    def accuracy(images: torch.Tensor, augment: str) -> float:
        victim = build_victim("resnet18", 10, width=profile.victim_width, image_size=int(images.shape[-1]), seed=0)
        config = TrainConfig(profile.victim_epochs, profile.victim_batch_size, profile.victim_lr, augment=augment, seed=0)
        victim = train_victim(victim, images, sets.labels, config, progress=False)
        pred = predict(victim, sets.test, batch_size=512)
        return float((pred == sets.test_labels).float().mean())

    clean = {aug: accuracy(sets.clean, aug) for aug in ("none", "crop")}
    rows = []
    for method in args.methods:
        settings = baseline_settings(method, epsilon=strength.EPSILON, surrogate=strength.SURROGATE,
                                     surrogate_image_size=profile.surrogate_image_size,
                                     model_width=profile.baseline_model_width, max_rounds=profile.baseline_max_rounds,
                                     train_epochs=profile.baseline_train_epochs,
                                     advpoison_steps=profile.advpoison_steps)
        images, record = fit_baseline(method, train_ds, consistent=True, settings=settings,
                                      epsilon=strength.EPSILON, progress=False)
        for aug in ("none", "crop"):
            acc = accuracy(images, aug)
            rows.append({"method": f"{method} (true labels)", "victim_augment": aug, "clean_acc": clean[aug],
                         "protected_acc": acc, "chance": chance,
                         "protection_score": (acc - chance) / (clean[aug] - chance) if clean[aug] > chance else None,
                         "fit_stats": {k: v for k, v in (record["stats"] or {}).items() if k != "seconds"}})
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
