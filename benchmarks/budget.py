"""Budget ablation: does Unlearnable Clusters protect better if its perturbations train longer?

Fits UC on the same balanced Fashion-MNIST train subset as ``strength.py`` (same surrogate,
p, eps, batch, generator, seed 0) at ``fit_epochs x m`` for each budget multiplier m, and
trains the same ResNet-18 victims (seed 0) on each protected set, tested on the clean test
split under the original 10 classes and the class-name relabellings into each ``--n-values``.
One clean victim per labelling (trained with the first budget) gives every row's
``clean_acc``. Everything else (data, victims, metric, row schema) is ``strength.py``'s (``_workload``).

    python benchmarks/budget.py --profile smoke --multipliers 1 2    # seconds (used by the tests)
    python benchmarks/budget.py --profile cpu --multipliers 1 4 --threads 1

At ``cpu`` on one thread the 1x fit (10 epochs, 20,000 surrogate passes) takes about 10-12
minutes, 4x about 45, and each victim about 45 s.

Writes ``benchmarks/results/budget.json`` (``{"config": ..., "rows": [...], "fits": {...}}``;
rows follow strength's row schema with extra keys ``budget_multiplier`` and ``attack_success``;
``fits["UC x<m>"]`` holds each fit's record). The file is rewritten after each fit and after
each labelling's victims (``config.status`` is ``partial`` until the end), so an interrupted
run keeps its fits and rows. Prints a markdown table per budget and strength's pivot table.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import _common
import _workload

from uc_datasets.evaluation.reporting import number, percent

if TYPE_CHECKING:
    from uc_datasets.evaluation.comparison import VictimRunner

logger = logging.getLogger("budget")

#: strength's profiles at the ablation's sizes: no defences, one seed, n = 10 plus ``--n-values``.
PROFILES = {
    "smoke": replace(_workload.PROFILES["smoke"], defenses=(), seeds=(0,)),
    "cpu": replace(_workload.PROFILES["cpu"], n_values=(5, 2), defenses=(), seeds=(0,)),
}


def method_name(multiplier: int) -> str:
    return f"UC x{multiplier}"


def budget_markdown(rows: list[dict], fits: dict[str, dict]) -> str:
    """One line per budget: epochs, surrogate passes, fit seconds, attack success, score per n."""
    ns = sorted({r["n_classes"] for r in rows}, reverse=True)
    score = {(r["method"], r["n_classes"]): number(r["protection_score"], ".2f") for r in rows}
    body = []
    for name, fit in fits.items():
        if "error" in fit:
            body.append([fit["budget_multiplier"], fit["fit_epochs"], "", "", "fit failed"] + [""] * len(ns))
            continue
        body.append([fit["budget_multiplier"], fit["fit_epochs"], f"{fit['surrogate_fwd_bwd_passes']:,}",
                     f"{fit['fit_seconds']:.0f}", percent(fit["attack_success"], 1)]
                    + [score.get((name, n), "") for n in ns])
    head = ["multiplier", "fit epochs", "surrogate passes", "fit s", "attack success %"] + [f"score n={n}" for n in ns]
    return _common.markdown_table(head, body)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--multipliers", type=int, nargs="+", default=[1, 4, 16],
                   help="UC budgets, as multiples of the profile's fit epochs (run in this order)")
    p.add_argument("--n-values", type=int, nargs="*", default=[5, 2],
                   help="relabellings besides the original 10 classes")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--output", default=str(_common.RESULTS_DIR / "budget.json"))
    args = p.parse_args(argv)
    if any(m < 1 for m in args.multipliers) or len(set(args.multipliers)) != len(args.multipliers):
        p.error("--multipliers must be distinct positive integers")
    args.encoder = "offline"
    return args


def main(argv: list[str] | None = None) -> dict:
    """Fit UC at each budget, train its victims right after; returns what was written."""
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES
    from uc_datasets.evaluation.comparison import make_labelings
    from uc_datasets.evaluation.tables import pivot_markdown

    args = parse_args(argv)
    _common.setup(args.threads)
    profile = replace(PROFILES[args.profile], n_values=tuple(args.n_values))
    logger.info("profile %s: %s; multipliers %s", args.profile, profile, args.multipliers)
    t_start = time.perf_counter()
    train_ds, sets = _workload.load_data(profile)
    labelings = make_labelings(FASHION_MNIST_CLASSES, profile.n_values, args.encoder)
    fits: dict[str, dict] = {}
    rows: list[dict] = []
    extra = {"encoder": args.encoder, "multipliers": args.multipliers, "victim_seed": 0, "fit_seed": 0,
             "clean_victims": "one per labelling, trained with the first budget, shared by every row",
             "relabelings": {str(lab.n_groups): lab.to_dict() for lab in labelings}}

    def save(status: str = "partial") -> dict:
        payload = _workload.payload(args, profile, "budget", extra, rows, status, fits=fits,
                                     timings={"total_seconds": time.perf_counter() - t_start})
        _common.write_json(args.output, payload)
        return payload

    runner: VictimRunner | None = None  # made after the first fit, as strength.py does
    cleans: dict[tuple, tuple[dict | None, str | None]] = {}  # the clean victims, shared by every budget
    try:
        for m in args.multipliers:
            name, epochs = method_name(m), profile.fit_epochs * m
            logger.info("fit %s: %d epochs", name, epochs)
            try:
                protector, images, record = _workload.fit_and_protect(train_ds, profile, progress=args.progress,
                                                                      epochs=epochs)
            except Exception as err:  # noqa: BLE001 - recorded as measured; the other budgets go on
                logger.exception("%s fit failed", name)
                fits[name] = {"budget_multiplier": m, "fit_epochs": epochs, "error": f"{type(err).__name__}: {err}"}
                save()
                continue
            fits[name] = {"budget_multiplier": m, "fit_epochs": epochs, **record}
            sets.add(name, images, groups=protector.cache_clusters, p=protector.config.n_clusters,
                     attack_success=record["attack_success"], budget_multiplier=m, fit_epochs=epochs)
            del protector  # the surrogate and generators are not needed any more
            gc.collect()
            save()
            if runner is None:
                runner = _workload.victim_runner(profile, sets, progress=args.progress)  # freezes gc (unfrozen below)
            done = list(rows)

            def on_rows(new: list[dict], done: list[dict] = done) -> None:
                rows[:] = done + new
                save()

            rows[:] = done + _workload.sweep(profile, sets, [("none", [name], labelings)], progress=args.progress,
                                             runner=runner, cleans=cleans, on_rows=on_rows)
    finally:
        gc.unfreeze()
    if runner is not None:
        logger.info("%d victims trained in %.0f s (%.1f s each)", runner.trainings, runner.seconds,
                    runner.seconds / max(runner.trainings, 1))
    payload = save("complete")
    print(budget_markdown(rows, fits))
    print(pivot_markdown(rows))
    logger.info("wrote %s", args.output)
    return payload


if __name__ == "__main__":
    main()
