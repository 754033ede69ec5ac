"""Screens of the UC settings on Fashion-MNIST: choices made on a validation subset of the train
split (disjoint from the fit images), never on the test split.

* ``--compare-defaults``: the default-choice variants (train_on members/all, loss kl/cosine,
  generator/direct, p) on the same data and victims (writes ``defaults.json``);
* ``--screen``: the perturbation families and keys (``SCREEN_VARIANTS``), victims at n = 10 and
  the profile's screen relabellings (writes ``screen.json``);
* ``--attack-screen``: label-aware variants against labels, JPEG-10, Gaussian smoothing,
  orthogonal projection and SimCLR at n = 10 (``ATTACK_SCREEN``; writes ``attack_screen.json``).

The rules that read these screens were written in benchmarks/README.md before each ran. The
workload (profiles, data, fits, victims) is ``_workload.py``, the engine the library's
``uc_datasets.evaluation``; ``strength.py --report JSON`` prints a saved screen's tables.

    python benchmarks/screen.py --profile smoke --screen      # seconds (used by the tests)
    python benchmarks/screen.py --profile cpu --compare-defaults
    python benchmarks/screen.py --profile cpu --attack-screen
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING, Any

import _common
from _workload import (
    PROFILES,
    StrengthProfile,
    default_variants,
    estimate,
    fit_and_protect,
    load_data,
    payload,
    profile_from_args,
    simclr,
    sweep,
    visual_meta,
)

from uc_datasets.evaluation.comparison import Plan, ProtectedSets, make_labelings
from uc_datasets.evaluation.tables import (
    attack_screen_markdown,
    pivot_markdown,
    results_markdown,
)

if TYPE_CHECKING:
    import datasets

    from uc_datasets.evaluation.relabel import Relabeling

logger = logging.getLogger("screen")


def run_compare_defaults(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """Each default-choice variant fitted on the same data; victims on the same labellings.

    Victims are scored on a validation subset of the train split (disjoint from the fit
    images), never on the test split: the defaults are chosen from these rows.
    """
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t_start = time.perf_counter()
    train_ds, sets = load_data(profile, validation=True)
    labelings = make_labelings(FASHION_MNIST_CLASSES, profile.defaults_n_values, args.encoder)
    fits = {}
    for name, overrides in default_variants(profile):
        logger.info("variant %s", name)
        protector, images, record = fit_and_protect(train_ds, profile, progress=args.progress, **overrides)
        cfg = protector.config
        sets.add(name, images, groups=protector.cache_clusters, method="UC", variant=name, p=cfg.n_clusters,
                 train_on=cfg.train_on, loss=cfg.loss, parametrization=cfg.parametrization,
                 attack_success=record["attack_success"], fit_seconds=record["fit_seconds"])
        fits[name] = record
    names = [name for name, _ in default_variants(profile)]
    return validation_sweep(args, profile, "compare-defaults", sets, names, labelings, t_start,
                            {"fits": fits, "variants": dict(default_variants(profile))})


def validation_sweep(args: argparse.Namespace, profile: StrengthProfile, mode: str, sets: ProtectedSets,
                     names: list[str], labelings: list[Relabeling], t_start: float, extra: dict) -> dict:
    """Victims for every variant in ``names`` under ``labelings``, scored on the validation subset
    (a choice is made from these rows, so never on the test split); writes and prints the rows."""
    extra = {"encoder": args.encoder, **extra,
             "scored_on": f"validation: {profile.n_test} train-split images disjoint from the fit images",
             "selection": "the defaults are chosen from these rows (validation subset); the test split is not read",
             "relabelings": {str(lab.n_groups): lab.to_dict() for lab in labelings}}

    def save(rows: list[dict], status: str = "partial") -> None:
        _common.write_json(args.output, payload(args, profile, mode, extra, rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    rows = sweep(profile, sets, [("none", names, labelings)], progress=args.progress, on_rows=save)
    save(rows, "complete")
    print(pivot_markdown(rows, key="variant"))
    print(results_markdown(rows, variant_key="variant"))
    return payload(args, profile, mode, extra, rows, "complete")


# --- screening of the perturbation families and keys (validation split) ----------------------

#: (variant name, label-aware?, UnlearnableClusters overrides). Fixed before the screen is run;
#: the rule that picks from them is in benchmarks/README.md ("Screening").
SCREEN_VARIANTS: list[tuple[str, bool, dict[str, Any]]] = [
    # label-free (the paper's setting): keys are K-means clusters of the surrogate features
    ("generator+shifts", False, {"augment_mode": "shifts"}),
    ("periodic-generator+shifts", False, {"pattern": "periodic-generator", "augment_mode": "shifts"}),
    ("tile", False, {"pattern": "tile"}),
    ("tile,l2-pca keys", False, {"pattern": "tile", "feature_norm": "l2-pca"}),
    ("tile,levels=5+2", False, {"pattern": "tile", "levels": (5, 2)}),
    ("ar", False, {"pattern": "ar"}),
    # label-aware: keys nested in the classes (one per class), coarser levels over class groups
    ("tile", True, {"pattern": "tile"}),
    ("tile,levels=5+2 (names)", True, {"pattern": "tile", "levels": (5, 2), "level_source": "class-names"}),
    ("tile,levels=5+2 (features)", True, {"pattern": "tile", "levels": (5, 2), "level_source": "features"}),
    ("tile,levels=7+5+3+2 (names)", True, {"pattern": "tile", "levels": (7, 5, 3, 2), "level_source": "class-names",
                                           "level_shares": (0.4, 0.15, 0.15, 0.15, 0.15)}),
    ("block,levels=5+2 (names)", True, {"pattern": "block", "levels": (5, 2), "level_source": "class-names"}),
    ("ar,levels=5+2 (names)", True, {"pattern": "ar", "levels": (5, 2), "level_source": "class-names"}),
    # issue 18 (2026-12-03): label-aware families built to be learned at once, screened at the best epoch
    ("tile-code", True, {"pattern": "tile-code"}),
    ("tile-code,per-image phase", True, {"pattern": "tile-code", "phase": "per-image"}),
    ("error-min", True, {"pattern": "error-min", "error_min": {"rounds": 30}}),
    ("error-min,levels=5+2 (names)", True, {"pattern": "error-min", "levels": (5, 2), "level_source": "class-names",
                                            "error_min": {"rounds": 30}}),
    ("tile+error-min,levels=5+2 (names)", True, {"pattern": "tile+error-min", "levels": (5, 2),
                                                 "level_source": "class-names", "error_min": {"rounds": 30}}),
    # issue 18, the attacker screen (--attack-screen): low-frequency keys against JPEG-10 and smoothing,
    # and a sample-wise contrastive residual (a quarter of epsilon) against SimCLR
    ("block", True, {"pattern": "block"}),
    ("wave", True, {"pattern": "wave"}),
    ("tile+error-min,levels=5+2 (names),contrastive", True, {
        "pattern": "tile+error-min", "levels": (5, 2), "level_source": "class-names", "error_min": {"rounds": 30},
        "contrastive_share": 0.25}),
]

#: The attacker screen: which variants (label-aware) meet which attacker at n = 10, on the
#: validation split. The rule that reads it is in benchmarks/README.md ("The attacker screen").
ATTACK_SCREEN: dict[str, tuple[str, ...]] = {
    "none": ("tile", "block", "wave", "tile-code", "tile-code,per-image phase", "tile+error-min,levels=5+2 (names)",
             "tile+error-min,levels=5+2 (names),contrastive"),
    "jpeg": ("tile", "block", "wave"),
    "gaussian": ("tile", "block", "wave"),
    "orthogonal": ("tile-code", "tile-code,per-image phase"),
    "simclr": ("tile", "tile+error-min,levels=5+2 (names)", "tile+error-min,levels=5+2 (names),contrastive"),
}


def variant_method(label_aware: bool) -> str:
    """The row ``method`` of a UC variant."""
    return "UC (label-aware)" if label_aware else "UC"


def fit_variants(args: argparse.Namespace, profile: StrengthProfile, train_ds: datasets.Dataset, sets: ProtectedSets,
                 variants: list[tuple[str, bool, dict]]) -> tuple[dict, list[str]]:
    """Fit each screening variant on ``train_ds`` into ``sets``; returns (fit records, row names)."""
    fits, names = {}, []
    for name, label_aware, overrides in variants:
        key = f"{variant_method(label_aware)}:{name}"
        logger.info("variant %s", key)
        protector, images, record = fit_and_protect(train_ds, profile, progress=args.progress,
                                                    label_column="label" if label_aware else None,
                                                    name_encoder=args.encoder, **overrides)
        sets.add(key, images, groups=protector.cache_clusters, method=variant_method(label_aware), variant=key,
                 p=protector.config.n_clusters, pattern=protector.config.pattern,
                 attack_success=record["attack_success"], fit_seconds=record["fit_seconds"],
                 **visual_meta(sets.clean, images))
        fits[key] = record
        names.append(key)
    return fits, names


def run_attack_screen(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """The attacker screen (``ATTACK_SCREEN``): label-aware variants against labels, JPEG-10,
    Gaussian smoothing, orthogonal projection and SimCLR at n = 10, on the validation split."""
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t_start = time.perf_counter()
    train_ds, sets = load_data(profile, validation=True)
    (lab,) = make_labelings(FASHION_MNIST_CLASSES, (), args.encoder)
    wanted = {v for vs in ATTACK_SCREEN.values() for v in vs}
    if args.variants:
        wanted &= {v.split(":", 1)[1] for v in args.variants if v.startswith(variant_method(True) + ":")}
    variants = [(n, la, ov) for n, la, ov in SCREEN_VARIANTS if la and n in wanted]
    fits, _ = fit_variants(args, profile, train_ds, sets, variants)
    key = {n: f"{variant_method(True)}:{n}" for n, _, _ in variants}
    screen = {a: [key[v] for v in vs if v in key] for a, vs in ATTACK_SCREEN.items()}
    extra = {"encoder": args.encoder, "fits": fits, "variants": {key[n]: ov for n, _, ov in variants},
             "attack_screen": screen,
             "scored_on": f"validation: {profile.n_test} train-split images disjoint from the fit images",
             "selection": "read by the rule in benchmarks/README.md (validation subset); the test split is not read"}

    def save(rows: list[dict], status: str = "partial") -> None:
        _common.write_json(args.output, payload(args, profile, "attack-screen", extra, rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    plan: Plan = [(a, vs, [lab]) for a, vs in screen.items() if a != "simclr" and vs]
    rows = sweep(profile, sets, plan, progress=args.progress, on_rows=save)
    save(rows)
    if screen["simclr"]:
        rows += simclr(profile, sets, screen["simclr"], profile.seeds[0], progress=args.progress)
    save(rows, "complete")
    print(attack_screen_markdown(rows))
    return payload(args, profile, "attack-screen", extra, rows, "complete")


def run_screen(args: argparse.Namespace, profile: StrengthProfile) -> dict:
    """Fit every screening variant on the same data; victims at n = 10, 5, 2 on the validation split.

    The current default (the generator, label-free) is not refitted here: its validation rows
    for the same data, victims and seed are in ``defaults.json`` (variant ``defaults``).
    """
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    t_start = time.perf_counter()
    train_ds, sets = load_data(profile, validation=True)
    labelings = make_labelings(FASHION_MNIST_CLASSES, profile.defaults_n_values, args.encoder)
    wanted = set(args.variants) if args.variants else None
    variants = [(n, la, ov) for n, la, ov in SCREEN_VARIANTS if wanted is None or f"{variant_method(la)}:{n}" in wanted]
    # Label-free levels group the clusters: a profile with few clusters (smoke) cannot have them.
    variants = [(n, la, ov) for n, la, ov in variants if la or max(ov.get("levels", (0,))) < profile.n_clusters]
    fits, names = fit_variants(args, profile, train_ds, sets, variants)
    variants_used = {f"{variant_method(la)}:{n}": ov for n, la, ov in variants}
    return validation_sweep(args, profile, "screen", sets, names, labelings, t_start,
                            {"fits": fits, "variants": variants_used})


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compare-defaults", action="store_true", help="the default-choice variants (defaults.json)")
    mode.add_argument("--screen", action="store_true",
                      help="the perturbation-family / key variants, victims at n = 10 and --screen-n-values "
                           "(screen.json)")
    mode.add_argument("--attack-screen", action="store_true",
                      help="label-aware variants against labels, JPEG-10, Gaussian smoothing, orthogonal projection "
                           "and SimCLR at n = 10 (attack_screen.json)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--estimate", action="store_true",
                   help="with --compare-defaults: calibrate and print the predicted run time only")
    p.add_argument("--variants", nargs="*", default=None,
                   help="with --screen / --attack-screen: only these variants ('UC:tile', 'UC (label-aware):tile', ...)")
    p.add_argument("--screen-n-values", type=int, nargs="+", default=None,
                   help="the relabellings besides n = 10 (profile default 5 2)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the profile's seeds")
    p.add_argument("--n-train", type=int, default=None, help="override the profile's train subset size")
    p.add_argument("--fit-epochs", type=int, default=None, help="override the profile's UC epochs")
    p.add_argument("--victim-epochs", type=int, default=None, help="override the profile's victim epochs")
    p.add_argument("--encoder", default="offline",
                   help="class-name encoder for the relabelling: offline (all-MiniLM-L6-v2), a Hub id/path, or a .npy "
                        "file of precomputed class-name embeddings")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--output", default=None, help="default: benchmarks/results/<defaults|screen|attack_screen>.json")
    args = p.parse_args(argv)
    if args.estimate and not args.compare_defaults:
        p.error("--estimate goes with --compare-defaults (strength.py --estimate for the strength run)")
    if args.output is None:
        name = "attack_screen" if args.attack_screen else "defaults" if args.compare_defaults else "screen"
        args.output = str(_common.RESULTS_DIR / f"{name}.json")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the chosen screen at the chosen profile; returns what was written."""
    args = parse_args(argv)
    _common.setup(args.threads)
    profile = profile_from_args(args, defaults_n_values=tuple(args.screen_n_values) if args.screen_n_values else None)
    if args.estimate:
        return estimate(profile, compare_defaults=True)
    run = run_attack_screen if args.attack_screen else run_screen if args.screen else run_compare_defaults
    result = run(args, profile)
    logger.info("wrote %s", args.output)
    return result


if __name__ == "__main__":
    main()
