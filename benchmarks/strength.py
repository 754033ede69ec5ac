"""Protection strength on Fashion-MNIST: ResNet-18 victims on clean, UC-protected and control data.

The train split (a class-balanced subset, Debian package ``dataset-fashion-mnist``) is
protected with Unlearnable Clusters and the offline ImageNet surrogate (EfficientNet-Lite0),
at the library's defaults (``train_on="members"``, KL loss, generator, p = 10, eps 16/255).
ResNet-18 victims (transformers config, small stem) are trained from scratch on the clean
and on each protected train set and tested on the clean test split, relabelled the same way:
the original 10 classes and the BERT-embedding K-means relabellings into n = 2..9 (offline
all-MiniLM-L6-v2 encoder). Controls at the same epsilon, added in uint8 levels like the
protector does, one grey pattern per key, either uniform U(-eps, eps) or a random sign
pattern of +-eps (three times the power of the uniform draw; the control of docs/design.md §2's
pre-product experiment):

* ``random-per-image``: an independent uniform draw for every image;
* ``random-per-cluster`` / ``sign-per-cluster``: one fixed draw per UC cluster (what UC's
  training adds beyond the cluster structure);
* ``random-per-class`` / ``sign-per-class``: one fixed draw per TRUE class (the label-keyed
  shortcut, an upper bound: it only works for the labels it was keyed to).

The sign controls and UC run under every labelling; the uniform ones at n = 10 only.

With ``--baselines`` the Table 1 baselines (EMinN sample- and class-wise, EMaxN, AdvPoison,
SynPer, DeepConfuse) are fitted label-agnostic (ImageNet classes predicted by the
same surrogate, the paper's setup) and run under every labelling; their label-consistent fits (true classes, the
"same labels" column of Figure 2a) run at n = 10. See ``_baselines.py`` for their settings.

For the UC clusters (and, from the same surrogate features, for K-means with other p) the
agreement of clusters and labels is reported for every labelling: NMI and the train accuracy
of the best cluster -> label rule (majority label of each cluster). With ``--defenses``
(default: mixup, cutmix, cutout, gaussian smoothing, JPEG-10, grayscale) victims are also
trained on clean and protected data under each defence, for n = 10.

``--compare-defaults`` instead fits the default-choice variants (train_on members/all, loss
kl/cosine, generator/direct, p = 5/10/20) on the same data and victims, scores them on a
validation subset of the train split (never the test split, since the defaults are chosen
from it) and writes ``defaults.json``. ``--estimate`` measures the throughputs briefly and prints the predicted
run time of the chosen profile and mode without running it.

Nothing is selected on the test split: every setting is fixed by the profile before the run.
``--report PATH`` prints the tables of a saved run.

    python benchmarks/strength.py --profile smoke            # seconds (used by the tests)
    python benchmarks/strength.py --profile cpu              # under 45 minutes on 2 cores
    python benchmarks/strength.py --profile cpu --baselines  # + Table 1 / Figure 2a (102 min on 1 thread, shared)
    python benchmarks/strength.py --profile cpu --compare-defaults
    python benchmarks/strength.py --profile paper            # GPU settings (reference protocol)

Writes ``benchmarks/results/strength.json`` (``strength_baselines.json``, ``defaults.json``) in the results.json schema
of ``uc_datasets.evaluation.sweep`` (``{"config": ..., "rows": [...]}``, extra row keys ``p``,
``nmi``, ``cluster_rule_acc``, ...) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import _common
from _baselines import CONSISTENT, fit_baseline
from _workload import (
    EPSILON,
    PROFILES,
    SURROGATE,
    StrengthProfile,
    fit_and_protect,
    load_data,
    payload,
    profile_baseline_settings,
    row_keys,
    victim_runner,
    visual_meta,
)

from uc_datasets.evaluation.comparison import (
    SIMCLR_ATTACKER,
    Plan,
    ProtectedSets,
    VictimRunner,
    cleans_from_rows,
    load_clean_victims,
    make_labelings,
    pseudo_sweep,
    save_clean_victims,
    simclr_sweep,
)
from uc_datasets.evaluation.comparison import sweep as _sweep
from uc_datasets.evaluation.controls import CONTROLS, CONTROLS_N10, add_noise_controls
from uc_datasets.evaluation.tables import (
    agreement_markdown,
    attack_screen_markdown,
    attacker_label,
    attacker_name,
    attackers_markdown,
    final_markdown,
    pivot_markdown,
    results_markdown,
)
from uc_datasets.methods.uc.config import LABEL_AWARE_DEFAULTS

if TYPE_CHECKING:
    import datasets
    import torch

    from uc_datasets import UCProtector
    from uc_datasets.evaluation.relabel import Relabeling

logger = logging.getLogger("strength")


def sweep(profile: StrengthProfile, sets: ProtectedSets, plan: Plan, *, progress: bool,
          on_rows: Callable[[list[dict]], None] | None = None, runner: VictimRunner | None = None,
          cleans: dict | None = None) -> list[dict]:
    """``comparison.sweep`` with the profile's victims, seeds and row columns."""
    runner = runner if runner is not None else victim_runner(profile, sets, progress=progress)
    return _sweep(sets, plan, runner, seeds=profile.seeds, row_keys=row_keys(profile), on_rows=on_rows,
                  cleans=cleans, progress=progress)


def pseudo(runner: VictimRunner, sets: ProtectedSets, methods: Sequence[str], profile: StrengthProfile, seed: int,
           on_rows: Callable[[list[dict]], None]) -> list[dict]:
    """The pseudo-label attacker (``comparison.pseudo_sweep``) at the profile's n values."""
    return pseudo_sweep(runner, sets, methods, profile.pseudo_n_values, seed, row_keys=row_keys(profile),
                        encoder=PSEUDO_ENCODER, on_rows=on_rows)


def simclr(profile: StrengthProfile, sets: ProtectedSets, methods: Sequence[str], seed: int, *,
           progress: bool) -> list[dict]:
    """The SimCLR attacker (``comparison.simclr_sweep``) at the profile's epochs and width."""
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES

    return simclr_sweep(sets, methods, seed, row_keys=row_keys(profile), class_names=FASHION_MNIST_CLASSES,
                        epochs=profile.simclr_epochs, width=profile.victim_width, progress=progress)


def add_controls(sets: ProtectedSets, clusters: Sequence[int], p: int, *, seed: int) -> None:
    """The noise controls at the profile's budget (``controls.add_noise_controls``)."""
    add_noise_controls(sets, clusters, p, epsilon=EPSILON, surrogate=SURROGATE, seed=seed)


def add_baselines(sets: ProtectedSets, train_ds: datasets.Dataset, profile: StrengthProfile, *,
                  progress: bool) -> dict[str, dict]:
    """Fit every baseline label-agnostic and label-consistent; their protected sets and records.

    A failed fit is logged and recorded; its method then has no rows.
    """
    records = {}
    for method in profile.baselines:
        settings = profile_baseline_settings(method, profile)
        for consistent in (False, True):
            name = method + (CONSISTENT if consistent else "")
            try:
                images, record = fit_baseline(method, train_ds, consistent=consistent, settings=settings,
                                              epsilon=EPSILON, progress=progress)
            except Exception as err:  # noqa: BLE001 - recorded as measured
                logger.exception("%s fit failed", name)
                records[name] = {"error": f"{type(err).__name__}: {err}"}
                continue
            sets.protected[name], sets.groups[name] = images, sets.labels.numpy() if consistent else None
            sets.meta[name] = {"p": record["n_perturbations"], "label_source": record["label_source"],
                               "surrogate": "none" if consistent else SURROGATE}
            records[name] = record
    return records


# --- labels and cluster agreement ----------------------------------------------------------


def cluster_agreement(protector: UCProtector, train_ds: datasets.Dataset, labels: torch.Tensor,
                      labelings: list[Relabeling], ps: Sequence[int], *, progress: bool) -> tuple[list[dict], bool]:
    """K-means of the fit's surrogate features for every p in ``ps``; agreement with every labelling.

    Also returns whether the p = n_clusters K-means reproduces the protector's clusters.
    """
    import numpy as np

    from uc_datasets.core.working_set import WorkingSet
    from uc_datasets.evaluation.agreement import agreement
    from uc_datasets.methods.uc.clustering import kmeans
    from uc_datasets.methods.uc.fit import compute_features

    surrogate = protector.surrogate
    device = next(surrogate.parameters()).device
    data = WorkingSet(train_ds, "image", protector.working_hw, progress=False)
    feats = compute_features(surrogate, data, batch_size=protector.config.feature_batch_size, device=device,
                             progress=progress)
    out, same = [], None
    for p in ps:
        if p > len(labels):
            continue
        _, clusters = kmeans(feats, p, seed=protector.config.seed)
        if p == protector.config.n_clusters:
            same = bool(np.array_equal(clusters, protector.cache_clusters))
        for lab in labelings:
            nmi, rule = agreement(clusters, lab.map_labels(labels))
            out.append({"p": p, "n_classes": lab.n_groups, "relabel": lab.method, "nmi": nmi,
                        "cluster_rule_acc": rule})
    logger.info("K-means on the fit features reproduces the protector's clusters: %s", same)
    return out, bool(same)


def report(path: str | Path) -> str:
    """The markdown tables of a saved strength / defaults JSON (``--report PATH``)."""
    import json

    saved = json.loads(Path(path).read_text())
    rows, mode = saved["rows"], saved["config"].get("mode")
    if mode == "attackers":
        return attackers_markdown(rows)
    if mode == "attack-screen":
        return attack_screen_markdown(rows)
    if mode == "final":
        return "\n".join([final_markdown(rows), attackers_markdown(rows)])
    key = "variant" if mode in ("compare-defaults", "screen") else "method"
    parts = [pivot_markdown(rows, key=key), results_markdown(rows, variant_key="variant" if key == "variant" else None)]
    if saved.get("cluster_agreement"):
        parts.append(agreement_markdown(saved["cluster_agreement"]))
    return "\n".join(parts)


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
        sets.protected["UC"], sets.groups["UC"] = uc_images, protector.cache_clusters
        sets.meta["UC"] = {"p": protector.config.n_clusters, "attack_success": fit_record["attack_success"],
                           "pattern": protector.config.pattern}
        la, la_images, la_record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed,
                                                   label_column="label", name_encoder=args.encoder,
                                                   **LABEL_AWARE_SETTINGS)
        sets.protected[LABEL_AWARE], sets.groups[LABEL_AWARE] = la_images, la.cache_clusters
        sets.meta[LABEL_AWARE] = {"p": la.config.n_clusters, "attack_success": la_record["attack_success"],
                                  "pattern": la.config.pattern, "surrogate": "none"}
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
PSEUDO_ENCODER = "pixels-pca"


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
        sets.protected["UC"], sets.groups["UC"] = uc_images, protector.cache_clusters
        sets.meta["UC"] = {"p": protector.config.n_clusters, "pattern": protector.config.pattern}
        la, la_images, la_record = fit_and_protect(train_ds, profile, progress=args.progress, seed=seed,
                                                   label_column="label", name_encoder=args.encoder,
                                                   **LABEL_AWARE_SETTINGS)
        sets.protected[LABEL_AWARE], sets.groups[LABEL_AWARE] = la_images, la.cache_clusters
        sets.meta[LABEL_AWARE] = {"p": la.config.n_clusters, "pattern": la.config.pattern, "surrogate": "none"}
        add_controls(sets, protector.cache_clusters, protector.config.n_clusters, seed=seed)
        if baseline_images is None:
            settings = profile_baseline_settings(BEST_BASELINE, profile)
            baseline_images, extra["baseline_fits"][BEST_BASELINE + CONSISTENT] = fit_baseline(
                BEST_BASELINE, train_ds, consistent=True, settings=settings, epsilon=EPSILON, progress=args.progress)
        name = BEST_BASELINE + CONSISTENT
        sets.protected[name], sets.groups[name] = baseline_images, sets.labels.numpy()
        sets.meta[name] = {"p": int(sets.labels.max()) + 1, "surrogate": "none"}
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


#: The final run's label-aware default: the library's (block keys since the follow-up rule in
#: benchmarks/README.md made them the default), run as ``UC (label-aware)``.
FINAL_LABEL_AWARE_SETTINGS: dict[str, Any] = dict(LABEL_AWARE_DEFAULTS)
#: Today's label-aware tile, beside it under its own name.
TILE_METHOD = "UC (label-aware tile)"
#: The fixed EMinN (true labels): the benchmark's setting with the change eminn_check.py measured.
EMINN_FIXED: dict[str, Any] = {"augment": "crop", "stop_error": 0.0, "max_rounds": 10}
EMINN_METHOD = "EMinN (true labels)"
FINAL_DEFENSES = ("mixup", "cutmix", "cutout", "gaussian", "jpeg")
#: The previous label-aware default (the best-epoch screen's choice), beside it under its own name.
HYBRID_METHOD = "UC (label-aware tile+error-min)"
HYBRID_SETTINGS: dict[str, Any] = {"pattern": "tile+error-min", "levels": (5, 2), "level_source": "class-names",
                                   "error_min": {"rounds": 30}}
FINAL_METHODS = ("UC", LABEL_AWARE, TILE_METHOD, EMINN_METHOD, "sign-per-class", HYBRID_METHOD)


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
                             "hybrid_settings": HYBRID_SETTINGS,
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
            sets.protected[EMINN_METHOD], sets.meta[EMINN_METHOD] = images, meta
            sets.groups[EMINN_METHOD] = None
        for name, label_column, settings in (("UC", None, UC_SETTINGS),
                                             (LABEL_AWARE, "label", FINAL_LABEL_AWARE_SETTINGS),
                                             (TILE_METHOD, "label", LABEL_AWARE_SETTINGS),
                                             (HYBRID_METHOD, "label", HYBRID_SETTINGS)):
            if name in methods:
                images, groups, meta, fits[name] = cached(f"{name} seed{seed}", uc_fit(seed, label_column, settings))
                sets.protected[name], sets.groups[name], sets.meta[name] = images, groups, meta
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


def default_variants(profile: StrengthProfile) -> list[tuple[str, dict]]:
    """(name, UnlearnableClusters overrides): the defaults, then one change at a time."""
    # train_on="all" makes p surrogate passes per image and epoch; it is compared at the same
    # number of surrogate passes as the default (fit_epochs / p epochs), i.e. at equal compute.
    all_epochs = max(1, profile.fit_epochs // profile.n_clusters)
    variants = [("defaults", {}), (f"train_on=all,epochs={all_epochs}", {"train_on": "all", "epochs": all_epochs}),
                ("loss=cosine", {"loss": "cosine"}), ("parametrization=direct", {"parametrization": "direct"})]
    variants += [(f"p={p}", {"n_clusters": p}) for p in profile.defaults_ps]
    return variants


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
        sets.protected[name], sets.groups[name] = images, protector.cache_clusters
        sets.meta[name] = {"method": "UC", "variant": name, "p": cfg.n_clusters, "train_on": cfg.train_on,
                           "loss": cfg.loss, "parametrization": cfg.parametrization,
                           "attack_success": record["attack_success"], "fit_seconds": record["fit_seconds"]}
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
        sets.protected[key], sets.groups[key] = images, protector.cache_clusters
        sets.meta[key] = {"method": variant_method(label_aware), "variant": key, "p": protector.config.n_clusters,
                          "pattern": protector.config.pattern, "attack_success": record["attack_success"],
                          "fit_seconds": record["fit_seconds"], **visual_meta(sets.clean, images)}
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


# --- estimate ----------------------------------------------------------------------------------


def planned_work(profile: StrengthProfile, compare_defaults: bool, baselines: bool = False) -> dict[str, float]:
    """Work units of a run: surrogate fwd+bwd passes, forward passes, victim train/test images."""
    n, seeds = profile.n_train, len(profile.seeds)
    if compare_defaults:
        variants = [ov for _, ov in default_variants(profile)]
        fit_all = sum(n * ov.get("epochs", profile.fit_epochs) * ov.get("n_clusters", profile.n_clusters)
                      for ov in variants if ov.get("train_on") == "all")
        fit_members = sum(n * ov.get("epochs", profile.fit_epochs) for ov in variants if ov.get("train_on") != "all")
        trainings = seeds * (1 + len(profile.defaults_n_values)) * (1 + len(variants))
        forward = 2 * n * len(variants)  # features, attack check
    else:
        fit_all, fit_members = 0, n * profile.fit_epochs
        n_base = len(profile.baselines) if baselines else 0  # their fits are not counted
        trainings = seeds * ((1 + len(profile.n_values)) * (1 + 1 + len(CONTROLS) + n_base)
                             + len(CONTROLS_N10) + n_base
                             + len(profile.defenses) * (1 + len(profile.defense_methods)))
        forward = 3 * n  # features, attack check, agreement features
    return {"fit_passes": float(fit_members), "fit_passes_train_on_all": float(fit_all),
            "forward_passes": float(forward), "trainings": float(trainings),
            "victim_train_images": float(trainings * n * profile.victim_epochs),
            "victim_test_images": float(trainings * profile.n_test)}


def calibrate(profile: StrengthProfile, compare_defaults: bool = False) -> dict[str, float]:
    """Measure throughputs at the profile's settings on a small slice (under a minute on a CPU).

    Fits run one epoch at the profile's surrogate size, batch and p (the generator's cost
    per step is included); with ``compare_defaults`` a ``train_on="all"`` fit is timed too.
    """
    import torch

    from uc_datasets import UnlearnableClusters
    from uc_datasets.core.models import build_victim
    from uc_datasets.evaluation.victims import TrainConfig, predict, train_victim

    n_fit = min(profile.n_train, 4 * profile.fit_batch_size)
    ds = _common.load_balanced_fashion_mnist("train", max(n_fit, 10 * profile.n_clusters))
    uc = UnlearnableClusters(surrogate=SURROGATE, surrogate_image_size=profile.surrogate_image_size,
                             n_clusters=profile.n_clusters, epochs=1, batch_size=profile.fit_batch_size,
                             ngf=profile.ngf, n_blocks=profile.n_blocks, progress=False)
    UnlearnableClusters(surrogate=SURROGATE, surrogate_image_size=profile.surrogate_image_size, n_clusters=2,
                        epochs=1, batch_size=10, ngf=8, n_blocks=1, progress=False).fit(ds.select(range(20)))  # warm
    sec = uc.fit(ds).metadata["stats"]["seconds"]
    speed = {"fit_passes_per_second": len(ds) / sec["train"], "forward_per_second": len(ds) / sec["features"]}
    if compare_defaults:
        uc.config.train_on = "all"
        small = ds.select(range(min(len(ds), max(profile.fit_batch_size, 10 * profile.n_clusters))))
        sec_all = uc.fit(small).metadata["stats"]["seconds"]
        speed["fit_passes_train_on_all_per_second"] = len(small) * profile.n_clusters / sec_all["train"]
    n_vic = min(profile.n_train, 8 * profile.victim_batch_size)
    x = torch.randint(0, 256, (n_vic, 3, 28, 28), dtype=torch.uint8)
    victim = build_victim("resnet18", 10, width=profile.victim_width, image_size=28, seed=0)
    train_victim(victim, x[: 2 * profile.victim_batch_size], torch.arange(2 * profile.victim_batch_size) % 10,
                 TrainConfig(1, profile.victim_batch_size), progress=False)  # warm-up
    t0 = time.perf_counter()
    train_victim(victim, x, torch.arange(n_vic) % 10, TrainConfig(1, profile.victim_batch_size), progress=False)
    t1 = time.perf_counter()
    predict(victim, x, batch_size=512)
    t2 = time.perf_counter()
    return {**speed, "victim_train_images_per_second": n_vic / (t1 - t0),
            "victim_test_images_per_second": n_vic / (t2 - t1)}


def estimate(profile: StrengthProfile, compare_defaults: bool, baselines: bool = False) -> dict:
    """Predicted seconds of a run = planned work / calibrated throughput, per phase."""
    work, speed = planned_work(profile, compare_defaults, baselines), calibrate(profile, compare_defaults)
    seconds = {"fits": work["fit_passes"] / speed["fit_passes_per_second"],
               "fits_train_on_all": work["fit_passes_train_on_all"]
               / speed.get("fit_passes_train_on_all_per_second", 1.0),
               "forward": work["forward_passes"] / speed["forward_per_second"],
               "victim_training": work["victim_train_images"] / speed["victim_train_images_per_second"],
               "victim_testing": work["victim_test_images"] / speed["victim_test_images_per_second"]}
    seconds["total"] = sum(seconds.values())
    rows = [[k, f"{v:.0f}", f"{v / 60:.1f}"] for k, v in seconds.items()]
    print(_common.markdown_table(["phase", "seconds", "minutes"], rows))
    logger.info("work %s; measured throughputs %s", work, {k: round(v, 1) for k, v in speed.items()})
    logger.info("not included: imports, data loading, map/verify, K-means, defence image transforms "
                "(together well under a minute at the cpu profile)")
    return {"work": work, "throughput": speed, "seconds": seconds}


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--compare-defaults", action="store_true",
                   help="fit the default-choice variants instead (writes defaults.json)")
    p.add_argument("--estimate", action="store_true", help="calibrate and print the predicted run time only")
    p.add_argument("--screen", action="store_true",
                   help="fit the perturbation-family / key variants, victims at n = 10, 5, 2 on the validation split "
                        "(writes screen.json)")
    p.add_argument("--variants", nargs="*", default=None,
                   help="with --screen / --attack-screen: only these variants ('UC:tile', "
                        "'UC (label-aware):tile', ...)")
    p.add_argument("--attack-screen", action="store_true",
                   help="the attacker screen: label-aware variants against labels, JPEG-10, Gaussian smoothing, "
                        "orthogonal projection and SimCLR at n = 10 on the validation split "
                        "(writes attack_screen.json)")
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
    p.add_argument("--fits-only", action="store_true", help="with --final: fit and cache the protected sets, no victims")
    p.add_argument("--final-skip", nargs="+", default=(), metavar="JSON",
                   help="with --final: skip each (method, seed, attacker) that has a measured row in these result "
                        "files, so a run resumes or fills the missing cells only")
    p.add_argument("--baselines", action="store_true",
                   help="add the Table 1 baselines (label-agnostic under every labelling, label-consistent at n = 10; "
                        "writes strength_baselines.json)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the profile's seeds")
    p.add_argument("--screen-n-values", type=int, nargs="+", default=None,
                   help="with --screen/--compare-defaults: the relabellings besides n = 10 (profile default 5 2)")
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
    p.add_argument("--output", default=None, help="default: benchmarks/results/strength.json or defaults.json")
    args = p.parse_args(argv)
    if args.output is None:
        name = ("attack_screen" if args.attack_screen else "defaults" if args.compare_defaults else "screen"
                if args.screen else "attackers" if args.attackers
                else "strength_baselines" if args.baselines else "strength")
        args.output = str(_common.RESULTS_DIR / f"{name}.json")
    return args


def merge(paths: Sequence[str], output: str, rename: dict[str, str] | None = None) -> dict:
    """``reporting.merge_results`` of the files at ``paths``, written to ``output``."""
    import json

    from uc_datasets.evaluation.reporting import merge_results

    merged = merge_results([json.loads(Path(p).read_text()) for p in paths], paths, rename)
    _common.write_json(output, merged)
    return merged


def plot(saved: dict, path: str) -> None:
    """The score plots of a saved run (``--report JSON --plot PNG``); the final run adds the
    best-epoch scores and the accuracy against the epoch."""
    from uc_datasets.evaluation.plots import plot_epochs, plot_scores

    key = "variant" if saved["config"].get("mode") in ("compare-defaults", "screen") else "method"
    plot_scores(saved["rows"], path, key=key, title="Fashion-MNIST, defence: none")
    if saved["config"].get("mode") == "final":
        stem = Path(path)
        plot_scores(saved["rows"], stem.with_name(stem.stem + "_best.png"), key=key, score="protection_score_best",
                    title="Fashion-MNIST, defence: none")
        plot_epochs(saved["rows"], stem.with_name(stem.stem + "_epochs.png"),
                    title="Fashion-MNIST, n = 10: test accuracy during training")


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
    profile = PROFILES[args.profile]
    overrides = {"seeds": tuple(args.seeds) if args.seeds else None, "n_train": args.n_train,
                 "fit_epochs": args.fit_epochs, "victim_epochs": args.victim_epochs,
                 "defenses": tuple(args.defenses) if args.defenses is not None else None,
                 "defaults_n_values": tuple(args.screen_n_values) if args.screen_n_values else None,
                 "n_values": tuple(args.n_values) if args.n_values else None}
    profile = replace(profile, **{k: v for k, v in overrides.items() if v is not None})
    logger.info("profile %s: %s", args.profile, profile)
    if args.estimate:
        return estimate(profile, args.compare_defaults, args.baselines)
    if args.attack_screen:
        result = run_attack_screen(args, profile)
    elif args.screen:
        result = run_screen(args, profile)
    elif args.compare_defaults:
        result = run_compare_defaults(args, profile)
    elif args.attackers:
        result = run_attackers(args, profile)
    elif args.final:
        result = run_final(args, profile)
    else:
        result = run_strength(args, profile)
    logger.info("wrote %s", args.output)
    return result


if __name__ == "__main__":
    main()
