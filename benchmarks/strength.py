"""Protection strength on Fashion-MNIST: ResNet-18 victims on clean, UC-protected, control and
baseline-protected data, tested on the clean test split under every labelling (the original 10
classes and the class-name K-means relabellings, n = 2..9), the defences and the attackers.

The workload (profiles, data, fits, victims) is ``_workload.py``; the engine (sweeps with a
shared clean-victim cache, noise controls, key agreement, tables, plots) is the library's
``uc_datasets.evaluation``. This script holds the modes and their command line:

* default: UC label-free and label-aware, the controls, every labelling, defences at n = 10
  (``--baselines`` adds the Table 1 baselines);
* ``--attackers``, ``--final``: the attacker table and the final run of the strength issue;
* ``--compare-defaults``, ``--screen``, ``--attack-screen``: choices made on a validation subset
  of the train split, never on the test split;
* ``--estimate``, ``--report JSON [--plot PNG]``, ``--merge JSON ...``.

Nothing is selected on the test split: every setting is fixed by the profile before the run.
benchmarks/README.md says what each mode runs and how long it takes.

    python benchmarks/strength.py --profile smoke            # seconds (used by the tests)
    python benchmarks/strength.py --profile cpu              # under 45 minutes on 2 cores
    python benchmarks/strength.py --profile cpu --final      # the final run (see benchmarks/README.md)
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import _common
from _baselines import CONSISTENT, fit_baseline
from _workload import (
    EARLY_WINNER_SETTINGS,
    EPSILON,
    PROFILES,
    PSEUDO_ENCODER,
    StrengthProfile,
    add_baselines,
    add_controls,
    cluster_agreement,
    estimate,
    fit_and_protect,
    fit_settings,
    load_data,
    merge,
    payload,
    plot,
    profile_baseline_settings,
    profile_from_args,
    pseudo,
    report,
    simclr,
    step_profile,
    sweep,
    victim_runner,
    visual_meta,
)

from uc_datasets.evaluation.comparison import (
    SIMCLR_ATTACKER,
    Plan,
    cleans_from_rows,
    load_clean_victims,
    make_labelings,
    save_clean_victims,
)
from uc_datasets.evaluation.controls import CONTROLS_N10
from uc_datasets.evaluation.tables import (
    agreement_markdown,
    attacker_label,
    attacker_name,
    attackers_markdown,
    final_markdown,
    pivot_markdown,
    results_markdown,
)
from uc_datasets.methods.uc.config import (
    BLOCK_KEYS,
    PREVIOUS_LABEL_AWARE_DEFAULTS,
)

logger = logging.getLogger("strength")


# --- the modes -----------------------------------------------------------------------------


#: Overrides of the label-free ``UC`` rows (empty: the library defaults).
UC_SETTINGS: dict[str, Any] = {}
#: The label-aware mode of the ``UC (label-aware)`` rows, chosen by the screen (benchmarks/README.md).
LABEL_AWARE_SETTINGS: dict[str, Any] = {"pattern": "tile"}
LABEL_AWARE = "UC (label-aware)"


def run_strength(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """UC (label-free defaults) and UC (label-aware), the controls, all labellings, defences at n = 10.

    Every seed refits both protectors and redraws the sign controls (fit seed = victim seed).
    Seed 0 also runs the extra controls (sign per UC cluster, uniform draws at n = 10), the
    baselines (``--baselines``), the defences and the cluster-agreement table.
    """
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t_start = time.perf_counter()
    train_ds, base = load_data(profile)
    labelings = make_labelings(FASHION_MNIST_CLASSES, profile.n_values, args.encoder)
    extra: dict[str, Any] = {"encoder": args.encoder, "uc_settings": UC_SETTINGS,
                             "label_aware_settings": LABEL_AWARE_SETTINGS, "fits": {}, "baseline_fits": {},
                             "relabelings": {str(lab.n_groups): lab.to_dict() for lab in labelings}}
    sections: dict[str, Any] = {"cluster_agreement": []}
    rows: list[dict] = []

    def save(new_rows: list[dict], status: str = "partial") -> None:
        _common.write_json(args.output, payload(args, profile, "strength", extra, rows + new_rows, status, **sections,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    for seed in profile.seeds:
        sets = base.without_protected()
        protector, uc_images, fit_record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed,
                                                           **UC_SETTINGS)
        sets.add("UC", uc_images, groups=protector.cache_clusters, p=protector.config.n_clusters,
                 attack_success=fit_record["attack_success"], pattern=protector.config.pattern)
        la, la_images, la_record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed,
                                                   label_column="label", name_encoder=args.encoder,
                                                   **LABEL_AWARE_SETTINGS)
        sets.add(LABEL_AWARE, la_images, groups=la.cache_clusters, p=la.config.n_clusters,
                 attack_success=la_record["attack_success"], pattern=la.config.pattern, surrogate="none")
        extra["fits"][str(seed)] = {"UC": fit_record, LABEL_AWARE: la_record}
        add_controls(sets, protector.cache_clusters, protector.config.n_clusters, seed=seed)
        methods = ["UC", LABEL_AWARE, "sign-per-class"]
        plan: Plan = [("none", methods, labelings)]
        if seed == 0:  # the extras: controls, baselines, defences, cluster agreement
            if args.baselines:
                extra["baseline_fits"] = add_baselines(sets, train_ds, profile, progress=args.progress)
            agree, same = cluster_agreement(protector, train_ds, sets.labels, labelings, profile.agreement_ps,
                                            progress=args.progress)
            sections["cluster_agreement"], extra["kmeans_reproduces_fit_clusters"] = agree, same
            agnostic = [m for m in profile.baselines if m in sets.protected]  # empty without --baselines
            consistent = [m + CONSISTENT for m in profile.baselines if m + CONSISTENT in sets.protected]
            plan = [("none", methods + ["sign-per-cluster", *agnostic], labelings),
                    ("none", [*CONTROLS_N10, *consistent], labelings[:1])]
            plan += [(d, list(profile.defense_methods), labelings[:1]) for d in profile.defenses]
        rows += sweep(replace(profile, seeds=(seed,)), sets, plan, progress=args.progress, on_rows=save)
    save([], "complete")
    print(pivot_markdown(rows))
    print(results_markdown(rows))
    if sections["cluster_agreement"]:
        print(agreement_markdown(sections["cluster_agreement"]))
    return payload(args, profile, "strength", extra, rows, "complete", **sections)


#: The methods of the attacker table: UC, the best new family (label-aware tile), the sign-per-
#: class control and the best baseline of strength_baselines.json (AdvPoison with true labels:
#: score 0.64 at n = 10, the lowest of every baseline fit).
BEST_BASELINE = "advpoison"
ATTACK_METHODS = ("UC", LABEL_AWARE, "sign-per-class", BEST_BASELINE + CONSISTENT)


def run_attackers(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """UC, the label-aware tile, the sign-per-class control and the best baseline against every
    attacker: supervised labels (original and BERT relabellings, final and best epoch), pseudo-
    labels, orthogonal projection and SimCLR. Every seed refits the protectors (fit seed = victim
    seed); the best baseline is fit once (seed 0), as in the baseline benchmark."""
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t_start = time.perf_counter()
    train_ds, base = load_data(profile)
    labelings = make_labelings(FASHION_MNIST_CLASSES, profile.attack_n_values, args.encoder)
    extra: dict[str, Any] = {"encoder": args.encoder, "uc_settings": UC_SETTINGS, "pseudo_encoder": PSEUDO_ENCODER,
                             "label_aware_settings": LABEL_AWARE_SETTINGS, "fits": {}, "baseline_fits": {},
                             "methods": list(ATTACK_METHODS),
                             "relabelings": {str(lab.n_groups): lab.to_dict() for lab in labelings}}
    rows: list[dict] = []

    def save(new_rows: list[dict], status: str = "partial") -> None:
        _common.write_json(args.output, payload(args, profile, "attackers", extra, rows + new_rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    baseline_images = None
    for seed in profile.seeds:
        sets = base.without_protected()
        protector, uc_images, fit_record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed,
                                                           **UC_SETTINGS)
        sets.add("UC", uc_images, groups=protector.cache_clusters, p=protector.config.n_clusters,
                 pattern=protector.config.pattern)
        la, la_images, la_record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed,
                                                   label_column="label", name_encoder=args.encoder,
                                                   **LABEL_AWARE_SETTINGS)
        sets.add(LABEL_AWARE, la_images, groups=la.cache_clusters, p=la.config.n_clusters, pattern=la.config.pattern,
                 surrogate="none")
        add_controls(sets, protector.cache_clusters, protector.config.n_clusters, seed=seed)
        if baseline_images is None:
            settings = profile_baseline_settings(BEST_BASELINE, profile)
            baseline_images, extra["baseline_fits"][BEST_BASELINE + CONSISTENT] = fit_baseline(
                BEST_BASELINE, train_ds, consistent=True, settings=settings, epsilon=EPSILON, progress=args.progress)
        name = BEST_BASELINE + CONSISTENT
        sets.add(name, baseline_images, groups=sets.labels.numpy(), p=int(sets.labels.max()) + 1, surrogate="none")
        extra["fits"][str(seed)] = {"UC": fit_record, LABEL_AWARE: la_record}
        methods = list(ATTACK_METHODS)
        one = replace(profile, seeds=(seed,))
        runner = victim_runner(one, sets, progress=args.progress)
        plan: Plan = [("none", methods, labelings), ("orthogonal", methods, labelings[:1])]
        rows += sweep(one, sets, plan, progress=args.progress, on_rows=save, runner=runner)
        rows += pseudo(runner, sets, methods, one, seed, save)
        rows += simclr(profile, sets, methods, seed, progress=args.progress)
        save([])
    save([], "complete")
    print(attackers_markdown(rows))
    return payload(args, profile, "attackers", extra, rows, "complete")


#: The block keys (the label-aware default from issue 18's follow-up rule to issue 27's final run),
#: run as ``UC (label-aware)``; the default since then is ``EARLY_METHOD``.
FINAL_LABEL_AWARE_SETTINGS: dict[str, Any] = dict(BLOCK_KEYS)
#: Today's label-aware tile, beside it under its own name.
TILE_METHOD = "UC (label-aware tile)"
#: The fixed EMinN (true labels): the benchmark's setting with the change eminn_check.py measured.
EMINN_FIXED: dict[str, Any] = {"augment": "crop", "stop_error": 0.0, "max_rounds": 10}
EMINN_METHOD = "EMinN (true labels)"
FINAL_DEFENSES = ("mixup", "cutmix", "cutout", "gaussian", "jpeg")
#: The previous label-aware default (the best-epoch screen's choice), beside it under its own name.
HYBRID_METHOD = "UC (label-aware tile+error-min)"
HYBRID_SETTINGS: dict[str, Any] = dict(PREVIOUS_LABEL_AWARE_DEFAULTS)
#: The early screen's winner (issue 27; the label-aware default since its final run), under its own name.
EARLY_METHOD = "UC (label-aware unrolled)"
FINAL_METHODS = ("UC", LABEL_AWARE, TILE_METHOD, EMINN_METHOD, "sign-per-class", HYBRID_METHOD, EARLY_METHOD)


def run_final(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """The final run of the strength issue: the chosen label-aware family, today's tile, UC
    label-free, the fixed EMinN (true labels) and the sign-per-class control, per seed (fit seed
    = victim seed), against every labelling (profile ``n_values`` and 10, final and best epoch),
    the defences at n = 10, orthogonal projection, pseudo-labels and SimCLR (``--final-attackers``
    picks a subset). Rows carry ``protection_score_best``, ``best_epoch``, ``psnr_db`` and ``ssim``."""
    import json

    import numpy as np

    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t_start = time.perf_counter()
    train_ds, base = load_data(profile)
    labelings = make_labelings(FASHION_MNIST_CLASSES, profile.n_values, args.encoder)
    attackers = set(args.final_attackers)
    skip_rows = [r for f in args.final_skip for r in json.loads(Path(f).read_text())["rows"]]
    done = {(r["method"], r["seed"], attacker_name(r)) for r in skip_rows if r.get("protected_acc") is not None}
    recorded_cleans = cleans_from_rows(skip_rows)
    extra: dict[str, Any] = {"encoder": args.encoder, "uc_settings": UC_SETTINGS, "pseudo_encoder": PSEUDO_ENCODER,
                             "label_aware_settings": FINAL_LABEL_AWARE_SETTINGS, "tile_settings": LABEL_AWARE_SETTINGS,
                             "hybrid_settings": HYBRID_SETTINGS, "early_settings": EARLY_WINNER_SETTINGS,
                             "evals_per_epoch": profile.evals_per_epoch, "early_epochs": profile.early_epochs,
                             "eminn_settings": EMINN_FIXED, "attackers": sorted(attackers), "fits": {},
                             "relabelings": {str(lab.n_groups): lab.to_dict() for lab in labelings}}
    rows: list[dict] = []

    def save(new_rows: list[dict], status: str = "partial") -> None:
        _common.write_json(args.output, payload(args, profile, "final", extra, rows + new_rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    cache = Path(args.final_cache) if args.final_cache else None
    cleans_file = None if cache is None else cache / "clean_victims.json"

    def cached(name: str, fit: Callable[[], tuple]) -> tuple:
        """``(images, groups, meta, record)`` of a fit, from ``--final-cache`` when it is there."""
        import json

        import torch

        stem = None if cache is None else cache / name.replace(" ", "_").replace("(", "").replace(")", "")
        if stem is not None and stem.with_suffix(".pt").exists():
            saved = torch.load(stem.with_suffix(".pt"), weights_only=True)
            record = json.loads(stem.with_suffix(".json").read_text())
            logger.info("%s: protected set from the cache %s", name, stem)
            return saved["images"], saved.get("groups"), record["meta"], record["fit"]
        images, groups, meta, record = fit()
        if stem is not None:
            stem.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"images": images, **({"groups": torch.as_tensor(groups)} if groups is not None else {})},
                       stem.with_suffix(".pt"))
            _common.write_json(stem.with_suffix(".json"), {"meta": meta, "fit": record})
        return images, groups, meta, record

    def uc_fit(seed: int, label_column: str | None, settings: dict) -> Callable[[], tuple]:
        def fit() -> tuple:
            kw = {"label_column": label_column, "name_encoder": args.encoder} if label_column else {}
            prot, images, record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed, **kw,
                                                   **settings)
            return images, prot.cache_clusters, {"p": prot.config.n_clusters, "pattern": prot.config.pattern}, record
        return fit

    def eminn_fit() -> tuple:
        settings = {**profile_baseline_settings("eminn", profile), **EMINN_FIXED, "seed": 0}
        images, record = fit_baseline("eminn", train_ds, consistent=True, settings=settings, epsilon=EPSILON,
                                      progress=args.progress)
        return images, None, {"p": len(base.labels), "surrogate": "none"}, record

    for seed in profile.seeds:
        sets = base.without_protected()
        fits: dict[str, Any] = {}
        methods = [m for m in FINAL_METHODS if m in args.final_methods]
        if EMINN_METHOD in methods:
            # fit once (seed 0) and shared by every seed's victims: the costliest fit here
            images, _, meta, fits[EMINN_METHOD] = cached(EMINN_METHOD, eminn_fit)
            sets.add(EMINN_METHOD, images, **meta)
        for name, label_column, settings in (("UC", None, UC_SETTINGS),
                                             (LABEL_AWARE, "label", FINAL_LABEL_AWARE_SETTINGS),
                                             (TILE_METHOD, "label", LABEL_AWARE_SETTINGS),
                                             (HYBRID_METHOD, "label", HYBRID_SETTINGS),
                                             (EARLY_METHOD, "label", fit_settings(EARLY_WINNER_SETTINGS, args.profile))):
            if name in methods:
                images, groups, meta, fits[name] = cached(f"{name} seed{seed}", uc_fit(seed, label_column, settings))
                sets.add(name, images, groups=groups, **meta)
        if "sign-per-class" in methods:
            clusters = sets.groups.get("UC")
            add_controls(sets, np.zeros(len(base.labels), dtype=np.int64) if clusters is None else np.asarray(clusters),
                         int(sets.meta.get("UC", {}).get("p", 1)), seed=seed)
        for m in methods:
            sets.meta[m] = {**sets.meta.get(m, {}), **visual_meta(sets.clean, sets.protected[m])}
        extra["fits"][str(seed)] = fits
        if args.fits_only:
            continue
        one = replace(profile, seeds=(seed,))
        runner = victim_runner(one, sets, progress=args.progress)
        cleans = {**recorded_cleans, **load_clean_victims(cleans_file)}

        def todo(*attacker_names: str) -> list[str]:
            """The methods that still lack a measured row for one of these attackers at this seed."""
            return [m for m in methods if any((m, seed, a) not in done for a in attacker_names)]

        plan: Plan = []
        for defense, labs in ((("none", labelings),) if "labels" in attackers else ()) + tuple(
                (d, labelings[:1]) for d in (FINAL_DEFENSES if "defenses" in attackers else ())) + (
                (("orthogonal", labelings[:1]),) if "orthogonal" in attackers else ()):
            for lab in labs:
                if todo_methods := todo(attacker_label(defense, lab.n_groups)):
                    plan.append((defense, todo_methods, [lab]))
        rows += sweep(one, sets, plan, progress=args.progress, on_rows=save, runner=runner, cleans=cleans)
        save_clean_victims(cleans_file, cleans)
        if "pseudo" in attackers and (todo_methods := todo(*(f"pseudo-labels n={n}" for n in profile.pseudo_n_values))):
            rows += pseudo(runner, sets, todo_methods, one, seed, save)
        if "simclr" in attackers and (todo_methods := todo(SIMCLR_ATTACKER)):
            rows += simclr(profile, sets, todo_methods, seed, progress=args.progress)
        save([])
    save([], "complete")
    print(final_markdown(rows))
    return payload(args, profile, "final", extra, rows, "complete")


# --- estimate ----------------------------------------------------------------------------------


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--estimate", action="store_true", help="calibrate and print the predicted run time only")
    p.add_argument("--attackers", action="store_true",
                   help="UC, the label-aware tile, the sign-per-class control and the best baseline against every "
                        "attacker: labels (final and best epoch), pseudo-labels, orthogonal projection, SimCLR "
                        "(writes attackers.json)")
    p.add_argument("--final", action="store_true",
                   help="the final run: chosen label-aware family, the tile, UC, the fixed EMinN and the sign control "
                        "against every labelling and --final-attackers (writes strength.json)")
    p.add_argument("--final-attackers", nargs="*", default=["labels", "defenses", "orthogonal", "pseudo", "simclr"],
                   choices=["labels", "defenses", "orthogonal", "pseudo", "simclr"],
                   help="with --final: the attackers (labels: every labelling, no defence)")
    p.add_argument("--final-cache", metavar="DIR", default=None,
                   help="with --final: keep each fit's protected set here and reuse it (parallel seed processes "
                        "share the one EMinN fit)")
    p.add_argument("--final-methods", nargs="+", default=list(FINAL_METHODS), choices=list(FINAL_METHODS),
                   help="with --final: a subset of the methods")
    p.add_argument("--step-resolved", action="store_true",
                   help="victims evaluated 4 times an epoch in their first 3 epochs (issue 27's step-resolved peak)")
    p.add_argument("--fits-only", action="store_true", help="with --final: fit and cache the protected sets, no victims")
    p.add_argument("--final-skip", nargs="+", default=(), metavar="JSON",
                   help="with --final: skip each (method, seed, attacker) that has a measured row in these result "
                        "files, so a run resumes or fills the missing cells only")
    p.add_argument("--baselines", action="store_true",
                   help="add the Table 1 baselines (label-agnostic under every labelling, label-consistent at n = 10; "
                        "writes strength_baselines.json)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the profile's seeds")
    p.add_argument("--n-values", type=int, nargs="+", default=None,
                   help="override the profile's relabellings n (besides the original 10)")
    p.add_argument("--n-train", type=int, default=None, help="override the profile's train subset size")
    p.add_argument("--fit-epochs", type=int, default=None, help="override the profile's UC epochs")
    p.add_argument("--victim-epochs", type=int, default=None, help="override the profile's victim epochs")
    p.add_argument("--defenses", nargs="*", default=None, help="override the profile's defences (n = 10)")
    p.add_argument("--encoder", default="offline",
                   help="class-name encoder for the relabelling: offline (all-MiniLM-L6-v2), a Hub id/path, or a .npy "
                        "file of precomputed class-name embeddings")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument("--report", metavar="JSON", default=None, help="print the tables of a saved run and exit")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="with --report: also plot protection score against n for every method/variant")
    p.add_argument("--merge", metavar="JSON", nargs="+", default=None,
                   help="merge strength runs of different seeds into --output and exit")
    p.add_argument("--rename", nargs="+", default=(), metavar="OLD=NEW",
                   help="with --merge: rename methods in the merged rows (all at once, so two names can swap)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--output", default=None, help="default: benchmarks/results/<strength|strength_baselines|attackers>.json")
    args = p.parse_args(argv)
    if args.output is None:
        name = "attackers" if args.attackers else "strength_baselines" if args.baselines else "strength"
        args.output = str(_common.RESULTS_DIR / f"{name}.json")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the chosen mode at the chosen profile; returns what was written (or the estimate)."""
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.output, dict(pair.split("=", 1) for pair in args.rename))
    if args.report:
        text = report(args.report)
        print(text)
        if args.plot:
            import json

            plot(json.loads(Path(args.report).read_text()), args.plot)
        return {"report": text}
    _common.setup(args.threads)
    profile = profile_from_args(args, defenses=tuple(args.defenses) if args.defenses is not None else None,
                                n_values=tuple(args.n_values) if args.n_values else None)
    if args.step_resolved:
        profile = step_profile(profile)
    if args.estimate:
        return estimate(profile, False, args.baselines)
    if args.attackers:
        result = run_attackers(args, profile)
    elif args.final:
        result = run_final(args, profile)
    else:
        result = run_strength(args, profile)
    logger.info("wrote %s", args.output)
    return result


if __name__ == "__main__":
    main()
