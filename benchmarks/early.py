"""Protection from the first steps (issue 27): label-aware families against a hacker who stops early.

Victims are evaluated four times an epoch in their first three epochs and at the end of every
epoch (the step-resolved peak); a row's ``protection_score_best`` is the best point of that
curve against the clean victim's best point. The workload (data, fits, victims) is ``_workload.py``.
Modes:

* ``--screen``: the candidate families (``CANDIDATES``) on the **validation** split (the next
  images of the train split; never the test split), seeds 0 and 1, n = 10, 7, 5, 4; the
  decision rule is in benchmarks/README.md ("Protection from the first steps"), written before
  the screen ran;
* ``--explain``: the measurements behind each result, seed 0, validation split: the gradient
  each family's perturbation gives a fresh victim at initialisation against the clean images'
  (``evaluation.diagnostics.gradient_at_init``), and the step at which each protected curve
  leaves the clean one (from the screen's rows);
* ``--frontier``: protection against visibility: epsilon 8, 16, 24, 32 levels for the families
  of ``--frontier-families``, best and final score at n = 10 with PSNR/SSIM, test split, 3 seeds;
* ``--label-free``: label-free UC (the paper's setting) against pseudo-labels from the surrogate's
  own embedding and from pixel PCA, test split, 3 seeds;
* ``--report JSON``: the tables of a saved run (``--plot PNG``: the frontier's plot).

    python benchmarks/early.py --profile smoke --screen     # seconds (used by the tests)
    python benchmarks/early.py --profile cpu --screen --seeds 0 --output early_screen_s0.json
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import _common
from _workload import (
    EARLY_WINNER_SETTINGS,
    PROFILES,
    SURROGATE,
    StrengthProfile,
    fit_and_protect,
    fit_settings,
    load_data,
    merge,
    payload,
    row_keys,
    step_profile,
    sweep,
    victim_runner,
    visual_meta,
)

from uc_datasets.evaluation.comparison import make_labelings, pseudo_sweep

logger = logging.getLogger("early")

#: The candidates of the screen, by row name: UCConfig overrides of a label-aware fit (the
#: block keys were the label-aware default when the screen ran, BLOCK_KEYS).
CANDIDATES: dict[str, dict[str, Any]] = {
    "block (default)": {"pattern": "block"},
    "class-mean away": {"pattern": "class-mean"},
    "class-mean derangement": {"pattern": "class-mean", "options": {"target": "derangement"}},
    "class-mean away + block 0.25": {"pattern": "class-mean", "options": {"block_share": 0.25}},
    "unrolled": {"pattern": "unrolled"},
    "unrolled from class-mean": {"pattern": "unrolled", "options": {"init": "class-mean"}},
    "unrolled from class-mean, levels 5+2 (names)": EARLY_WINNER_SETTINGS,
}
SCREEN_N_VALUES = (7, 5, 4)
FRONTIER_EPSILONS = (8, 16, 24, 32)


def candidate_settings(name: str, profile_name: str) -> dict[str, Any]:
    """The fit overrides of candidate ``name`` (the unrolled crafting shrunk at the smoke profile)."""
    return fit_settings(CANDIDATES[name], profile_name)


def fit_candidates(train_ds, sets, names: list[str], args: argparse.Namespace, profile: StrengthProfile, seed: int, *,
                   epsilon_levels: int = 16, suffix: str = "") -> dict[str, dict]:
    """Fit every candidate label-aware (fit seed = ``seed``) and add its protected set; the fit records."""
    records = {}
    for name in names:
        settings = candidate_settings(name, args.profile)
        prot, images, record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed,
                                               label_column="label", name_encoder=args.encoder,
                                               epsilon=epsilon_levels / 255, **settings)
        sets.add(name + suffix, images, groups=prot.cache_clusters, p=prot.config.n_clusters,
                 pattern=prot.config.pattern, surrogate="none", epsilon=f"{epsilon_levels}/255",
                 epsilon_levels=epsilon_levels, fit_seconds=round(record["fit_seconds"], 1),
                 **visual_meta(sets.clean, images))
        records[name + suffix] = record
    return records


def saver(args: argparse.Namespace, profile: StrengthProfile, mode: str, extra: dict, rows: list[dict],
          t0: float) -> Callable[..., None]:
    """``save(new_rows, status="partial")``: rewrite the results file with ``rows`` (the list, as it
    grows) plus ``new_rows``, so an interrupted run keeps what it measured."""
    def save(new_rows: list[dict], status: str = "partial") -> None:
        _common.write_json(args.output, payload(args, profile, mode, extra, rows + new_rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t0}))
    return save


def run_screen(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """Every candidate on the validation split, step-resolved victims, n = 10 and ``SCREEN_N_VALUES``."""
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t0 = time.perf_counter()
    train_ds, base = load_data(profile, validation=True)
    labelings = make_labelings(FASHION_MNIST_CLASSES, args.n_values or SCREEN_N_VALUES, args.encoder)
    names = args.candidates or list(CANDIDATES)
    extra: dict[str, Any] = {"encoder": args.encoder, "candidates": {n: CANDIDATES[n] for n in names},
                             "split": "validation (train split, after the fit images)", "fits": {}}
    rows: list[dict] = []

    save = saver(args, profile, "early-screen", extra, rows, t0)

    for seed in profile.seeds:
        sets = base.without_protected()
        extra["fits"][str(seed)] = fit_candidates(train_ds, sets, names, args, profile, seed)
        one = replace(profile, seeds=(seed,))
        rows += sweep(one, sets, [("none", names, labelings)], progress=args.progress, on_rows=save)
        save([])
    save([], "complete")
    print(screen_markdown(rows))
    return payload(args, profile, "early-screen", extra, rows, "complete")


def run_explain(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """The gradient each candidate gives fresh victims at initialisation (seed 0, validation split)."""
    from uc_datasets.evaluation.diagnostics import gradient_at_init

    t0 = time.perf_counter()
    train_ds, base = load_data(profile, validation=True)
    sets = base.without_protected()
    fits: dict[str, Any] = {}
    import torch

    for spec in args.protected:  # protected sets of the same fit images, saved by strength.py --final-cache
        name, _, path = spec.partition("=")
        images = torch.load(path, weights_only=True)["images"]
        if images.shape != sets.clean.shape:
            raise SystemExit(f"{path}: {tuple(images.shape)} images, the fit set is {tuple(sets.clean.shape)}")
        sets.add(name, images)
        fits[name] = {"from": path}
    names = [spec.partition("=")[0] for spec in args.protected]
    if args.candidates or not names:
        cands = args.candidates or list(CANDIDATES)
        fits.update(fit_candidates(train_ds, sets, cands, args, profile, 0))
        names += cands
    labels = sets.labels
    gradients = []
    seeds = (0, 1, 2) if args.profile != "smoke" else (0,)
    batches = 8 if args.profile != "smoke" else 1
    bs = min(profile.victim_batch_size, len(labels))
    control = gradient_at_init(sets.clean, sets.clean, labels, 10, width=profile.victim_width, seeds=seeds,
                               batches=batches, batch_size=bs)
    gradients.append({"method": "clean (control: no perturbation)", **control})
    for name in names:
        g = gradient_at_init(sets.clean, sets.protected[name], labels, 10, width=profile.victim_width, seeds=seeds,
                             batches=batches, batch_size=bs)
        gradients.append({"method": name, **g})
        logger.info("%s: |g_p - g_c| / |g_c| = %.3f, cos(g_p, g_c) = %.3f", name, g["ratio"], g["cos_clean"])
    result = payload(args, profile, "early-explain", {"fits": fits, "gradient_seeds": list(seeds),
                                                      "gradient_batches": batches}, [], "complete",
                     gradients=gradients, timings={"total_seconds": time.perf_counter() - t0})
    _common.write_json(args.output, result)
    print(gradients_markdown(gradients))
    return result


def run_frontier(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """Epsilon 8..32 levels for each of ``--frontier-families``: best and final score at n = 10, test split."""
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t0 = time.perf_counter()
    train_ds, base = load_data(profile)
    labelings = make_labelings(FASHION_MNIST_CLASSES, (), args.encoder)
    names = args.frontier_families
    epsilons = args.epsilons or FRONTIER_EPSILONS
    extra: dict[str, Any] = {"candidates": {n: CANDIDATES[n] for n in names}, "epsilons": list(epsilons),
                             "split": "test", "fits": {}}
    rows: list[dict] = []

    save = saver(args, profile, "early-frontier", extra, rows, t0)

    for seed in profile.seeds:
        sets = base.without_protected()
        extra["fits"][str(seed)] = {}
        for eps in epsilons:
            extra["fits"][str(seed)].update(fit_candidates(train_ds, sets, names, args, profile, seed,
                                                           epsilon_levels=eps, suffix=f" @ {eps}/255"))
        one = replace(profile, seeds=(seed,))
        rows += sweep(one, sets, [("none", list(sets.protected), labelings)], progress=args.progress, on_rows=save)
        save([])
    save([], "complete")
    print(frontier_markdown(rows))
    return payload(args, profile, "early-frontier", extra, rows, "complete")


def run_label_free(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """Label-free UC (library defaults) against pseudo-labels from the surrogate's own embedding
    and from pixel PCA, n = 10 and 5, per seed (fit seed = victim seed), test split."""
    t0 = time.perf_counter()
    train_ds, base = load_data(profile)
    extra: dict[str, Any] = {"encoders": [SURROGATE, "pixels-pca"], "pseudo_n_values": list(profile.pseudo_n_values),
                             "split": "test", "fits": {}}
    rows: list[dict] = []

    save = saver(args, profile, "early-label-free", extra, rows, t0)

    for seed in profile.seeds:
        sets = base.without_protected()
        prot, images, record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed)
        sets.add("UC", images, groups=prot.cache_clusters, p=prot.config.n_clusters, pattern=prot.config.pattern,
                 **visual_meta(sets.clean, images))
        extra["fits"][str(seed)] = record
        one = replace(profile, seeds=(seed,))
        runner = victim_runner(one, sets, progress=args.progress)
        for encoder in (SURROGATE, "pixels-pca"):
            image_size = profile.surrogate_image_size if encoder == SURROGATE else None
            rows += pseudo_sweep(runner, sets, ["UC"], profile.pseudo_n_values, seed, row_keys=row_keys(one),
                                 encoder=encoder, image_size=image_size, on_rows=save)
            save([])
    save([], "complete")
    print(label_free_markdown(rows))
    return payload(args, profile, "early-label-free", extra, rows, "complete")


# --- tables ----------------------------------------------------------------------------------------


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def departure_cell(rows: list[dict]) -> str:
    """``"<median departure step> (<departed>/<victims>)"`` of rows with step-resolved curves
    (``evaluation.diagnostics.departure_step``; "never" if no victim departs)."""
    from uc_datasets.evaluation.diagnostics import departure_step

    departs = [departure_step(r["eval_steps"], r["clean_acc_per_step"], r["protected_acc_per_step"])
               for r in rows if r.get("clean_acc_per_step") and r.get("protected_acc_per_step")]
    known = sorted(d for d in departs if d is not None)
    return f"{known[len(known) // 2] if known else 'never'} ({len(known)}/{len(departs)})"


def screen_markdown(rows: list[dict]) -> str:
    """Seed-mean best (step-resolved) and final scores per candidate and n; the screen score (worst
    n of the best score), the epoch-end best beside it, and the median departure step."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ns = sorted({r["n_classes"] for r in rows}, reverse=True)
    head = ["candidate"] + [f"n = {n}: best (final)" for n in ns] + ["screen score (worst best)",
                                                                      "epoch-end best, worst n", "departs at step",
                                                                      "PSNR dB"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in methods:
        cells, worst, worst_end = [], None, None
        for n in ns:
            mine = [r for r in rows if r["method"] == m and r["n_classes"] == n]
            best = _mean([r.get("protection_score_best") for r in mine])
            final = _mean([r.get("protection_score") for r in mine])
            end = _mean([r.get("protection_score_best_epoch_end") for r in mine])
            cells.append(f"{_fmt(best)} ({_fmt(final)})")
            worst = best if worst is None or (best is not None and best > worst) else worst
            worst_end = end if worst_end is None or (end is not None and end > worst_end) else worst_end
        psnr = _mean([r.get("psnr_db") for r in rows if r["method"] == m])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_fmt(worst)} | {_fmt(worst_end)} | "
                     f"{departure_cell([r for r in rows if r['method'] == m])} | {_fmt(psnr)} |")
    return "\n".join(lines)


def gradients_markdown(gradients: list[dict]) -> str:
    head = ["perturbation", "|g_c| (real features)", "|g_p - g_c| (perturbation)", "ratio", "cos(g_p, g_c)",
            "cos(g_p - g_c, g_c)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for g in gradients:
        lines.append(f"| {g['method']} | {g['clean_norm']:.3f} | {g['perturbation_norm']:.3f} | {g['ratio']:.3f} | "
                     f"{g['cos_clean']:.3f} | {g['cos_perturbation']:.3f} |")
    return "\n".join(lines)


def frontier_markdown(rows: list[dict]) -> str:
    head = ["family", "epsilon", "best (step-resolved)", "final", "seeds", "departs at step", "PSNR dB", "SSIM"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == m]
        family, _, eps = m.rpartition(" @ ")
        best = [r.get("protection_score_best") for r in mine]
        lines.append(f"| {family} | {eps} | {_fmt(_mean(best))} | {_fmt(_mean([r.get('protection_score') for r in mine]))}"
                     f" | {', '.join(_fmt(b) for b in best)} | {departure_cell(mine)}"
                     f" | {_fmt(_mean([r.get('psnr_db') for r in mine]))} | "
                     f"{_fmt(_mean([r.get('ssim') for r in mine]), 3)} |")
    return "\n".join(lines)


def label_free_markdown(rows: list[dict]) -> str:
    head = ["pseudo-labels", "n", "best (step-resolved)", "final", "seeds", "NMI with classes", "NMI with UC's keys"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    keys = dict.fromkeys((r["relabel"], r["n_classes"]) for r in rows)
    for relabel, n in keys:
        mine = [r for r in rows if r["relabel"] == relabel and r["n_classes"] == n]
        best = [r.get("protection_score_best") for r in mine]
        lines.append(f"| {relabel} | {n} | {_fmt(_mean(best))} | {_fmt(_mean([r.get('protection_score') for r in mine]))}"
                     f" | {', '.join(_fmt(b) for b in best)} | {_fmt(_mean([r.get('pseudo_nmi_class') for r in mine]))}"
                     f" | {_fmt(_mean([r.get('pseudo_nmi_keys') for r in mine]))} |")
    return "\n".join(lines)


def report(path: str) -> str:
    import json

    saved = json.loads(Path(path).read_text())
    mode = saved["config"].get("mode")
    if mode == "early-explain":
        return gradients_markdown(saved["gradients"])
    if mode == "early-frontier":
        return frontier_markdown(saved["rows"])
    if mode == "early-label-free":
        return label_free_markdown(saved["rows"])
    return screen_markdown(saved["rows"])


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--screen", action="store_true", help="the candidates on the validation split (the default)")
    mode.add_argument("--explain", action="store_true", help="gradients at initialisation, seed 0, validation split")
    mode.add_argument("--frontier", action="store_true", help="epsilon 8..32 against PSNR/SSIM, test split")
    mode.add_argument("--label-free", action="store_true", help="label-free UC against pseudo-labels, test split")
    mode.add_argument("--report", metavar="JSON", default=None, help="print the tables of a saved run and exit")
    mode.add_argument("--merge", metavar="JSON", nargs="+", default=None, help="merge runs into --output and exit")
    p.add_argument("--protected", nargs="+", default=[], metavar="NAME=PT",
                   help="with --explain: protected sets of the fit images saved by strength.py --final-cache "
                        "(instead of refitting; with --candidates, those are fitted too)")
    p.add_argument("--plot", metavar="PNG", default=None, help="with --report of a frontier run: its plot")
    p.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=None,
                   help="a subset of the candidates (default: all)")
    p.add_argument("--frontier-families", nargs="+", choices=list(CANDIDATES), default=["block (default)"])
    p.add_argument("--epsilons", type=int, nargs="+", default=None, help="frontier epsilons in levels (8 16 24 32)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the seeds (screen: 0 1; others: 0 1 2)")
    p.add_argument("--n-values", type=int, nargs="+", default=None, help="screen relabellings besides n = 10 (7 5 4)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--fit-epochs", type=int, default=None)
    p.add_argument("--victim-epochs", type=int, default=None)
    p.add_argument("--encoder", default="offline", help="class-name encoder of the relabelling (offline: MiniLM)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    if args.output is None:
        name = ("early_explain" if args.explain else "early_frontier" if args.frontier else
                "early_label_free" if args.label_free else "early_screen")
        args.output = str(_common.RESULTS_DIR / f"{name}.json")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.output)
    if args.report:
        text = report(args.report)
        print(text)
        if args.plot:
            import json

            from uc_datasets.evaluation.plots import plot_frontier

            plot_frontier(json.loads(Path(args.report).read_text())["rows"], args.plot,
                          title="Fashion-MNIST, n = 10, test split: protection against visibility")
        return {"report": text}
    _common.setup(args.threads)
    default_seeds = (0, 1) if not (args.frontier or args.label_free) else (0, 1, 2)
    profile = step_profile(replace(PROFILES[args.profile], seeds=tuple(args.seeds or default_seeds),
                                   **{k: v for k, v in (("n_train", args.n_train), ("fit_epochs", args.fit_epochs),
                                                        ("victim_epochs", args.victim_epochs)) if v is not None}))
    if args.profile == "smoke":
        profile = replace(profile, seeds=profile.seeds[:1])
    if args.explain:
        return run_explain(args, profile)
    if args.frontier:
        return run_frontier(args, profile)
    if args.label_free:
        return run_label_free(args, profile)
    return run_screen(args, profile)


if __name__ == "__main__":
    main()
