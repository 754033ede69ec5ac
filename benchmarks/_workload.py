"""The Fashion-MNIST strength workload that the benchmark scripts share: the profiles (every
size and setting of a run, fixed before it), the balanced data as tensors, the UC fit with its
record, the victims and the identity columns of a row. The engine itself (sweeps, tables,
plots) is the library's ``uc_datasets.evaluation``.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import _common
from _baselines import ALL_BASELINES, CONSISTENT, baseline_settings, fit_baseline

if TYPE_CHECKING:
    import datasets
    import torch

    from uc_datasets import UCProtector
    from uc_datasets.evaluation.comparison import Plan, ProtectedSets, VictimRunner
    from uc_datasets.evaluation.relabel import Relabeling

logger = logging.getLogger("strength")

EPSILON = 16 / 255
SURROGATE = "efficientnet-lite0"
DATASET = "fashion-mnist"
PAPER_DEFENSES = ("mixup", "cutmix", "cutout", "gaussian", "jpeg", "grayscale")


@dataclass(frozen=True)
class StrengthProfile:
    """Every size and setting of one run; fixed before the run, never chosen on test data."""

    n_train: int
    n_test: int
    surrogate_image_size: int | None  # None: the surrogate's own 224 px
    fit_epochs: int
    fit_batch_size: int
    victim_width: float
    victim_epochs: int
    victim_batch_size: int
    victim_lr: float = 0.1
    n_clusters: int = 10
    n_values: tuple[int, ...] = (9, 8, 7, 6, 5, 4, 3, 2)
    defenses: tuple[str, ...] = PAPER_DEFENSES
    defense_methods: tuple[str, ...] = ("UC", "UC (label-aware)")
    seeds: tuple[int, ...] = (0,)
    agreement_ps: tuple[int, ...] = (2, 5, 10, 20, 50, 100)
    ngf: int = 64
    n_blocks: int = 6
    defaults_n_values: tuple[int, ...] = (5, 2)
    defaults_ps: tuple[int, ...] = (5, 20)
    baselines: tuple[str, ...] = ALL_BASELINES
    baseline_model_width: float = 0.125
    baseline_max_rounds: tuple[int, int] = (5, 20)  # EMinN sample-wise, class-wise (reference: 50)
    baseline_train_epochs: int = 10  # EMaxN / AdvPoison classifier (reference: 30)
    advpoison_steps: int = 50  # (reference: 250)
    deepconfuse_trials: int = 5  # (reference: up to 1000)
    deepconfuse_classifier_epochs: int = 6  # per trial (reference: 20)
    # --attackers: supervised labellings n (besides the original 10), pseudo-label n, SimCLR epochs
    attack_n_values: tuple[int, ...] = (5, 2)
    pseudo_n_values: tuple[int, ...] = (10, 5)
    simclr_epochs: int = 10
    # the step-resolved peak (issue 27): evaluations an epoch in the first early_epochs epochs
    evals_per_epoch: int = 1
    early_epochs: int = 0


PROFILES = {
    # Seconds: a handful of images and one victim epoch; checks the plumbing, not the method.
    "smoke": StrengthProfile(n_train=40, n_test=20, surrogate_image_size=32, fit_epochs=1, fit_batch_size=20,
                             victim_width=0.0625, victim_epochs=1, victim_batch_size=20, n_clusters=4, n_values=(5, 2),
                             ngf=8, n_blocks=1, agreement_ps=(2, 4), defaults_n_values=(2,), defaults_ps=(3,),
                             baseline_model_width=0.0625, baseline_max_rounds=(1, 1), baseline_train_epochs=1,
                             advpoison_steps=2, attack_n_values=(2,), pseudo_n_values=(3,), simclr_epochs=1,
                             deepconfuse_trials=1, deepconfuse_classifier_epochs=1),
    # Under 45 minutes on 2 cores (see benchmarks/README.md for the estimate and how it was made).
    "cpu": StrengthProfile(n_train=2000, n_test=2000, surrogate_image_size=64, fit_epochs=10, fit_batch_size=100,
                           victim_width=0.125, victim_epochs=12, victim_batch_size=64),
    # GPU: the whole train split, the surrogate at 224 px, the reference protocol (UC 50 epochs,
    # batch 256; ResNet-18 full width, 90 epochs, batch 512, SGD 0.1), 3 seeds, PGD added.
    "paper": StrengthProfile(n_train=60_000, n_test=10_000, surrogate_image_size=None, fit_epochs=50,
                             fit_batch_size=256, victim_width=1.0, victim_epochs=90, victim_batch_size=512,
                             defenses=PAPER_DEFENSES + ("pgd",),
                             defense_methods=("UC", "UC (label-aware)", "random-per-class"),
                             seeds=(0, 1, 2), defaults_n_values=(9, 8, 7, 6, 5, 4, 3, 2), baseline_model_width=1.0,
                             baseline_max_rounds=(50, 50), baseline_train_epochs=30, advpoison_steps=250,
                             simclr_epochs=200, deepconfuse_trials=20, deepconfuse_classifier_epochs=20),
}


# --- data, fits and rows ---------------------------------------------------------------------


#: The winner of the early screen by its rule (benchmarks/README.md, "Protection from the first
#: steps"): keys crafted through the first SGD steps of fresh CNNs, started from the class-mean
#: keys, with the coarser levels from the class names. UCConfig overrides of a label-aware fit.
EARLY_WINNER_SETTINGS: dict[str, Any] = {"pattern": "unrolled", "levels": (5, 2), "level_source": "class-names",
                                         "options": {"init": "class-mean"}}
#: Fewer crafting rounds of the unrolled family at the smoke profile (the plumbing only).
SMOKE_UNROLLED_OPTIONS = {"rounds": 2, "horizon": 2, "batch_size": 8, "val_batch_size": 8, "width": 4}


def step_profile(profile: StrengthProfile) -> StrengthProfile:
    """The profile with the step-resolved victims of issue 27: 4 evaluations an epoch in the first 3."""
    from dataclasses import replace

    return replace(profile, evals_per_epoch=4, early_epochs=3)


def fit_settings(settings: dict[str, Any], profile_name: str) -> dict[str, Any]:
    """``settings`` of a label-aware fit, the unrolled crafting shrunk at the smoke profile."""
    settings = dict(settings)
    if profile_name == "smoke" and settings.get("pattern") == "unrolled":
        settings["options"] = {**settings.get("options", {}), **SMOKE_UNROLLED_OPTIONS}
    return settings


def load_data(profile: StrengthProfile, *, validation: bool = False) -> tuple[datasets.Dataset, ProtectedSets]:
    """Balanced train and test subsets of Fashion-MNIST as datasets and uint8 tensors.

    With ``validation`` the "test" images are a balanced validation subset of the train
    split, disjoint from the training images; choices made on it never see the test split.
    """
    from uc_datasets.evaluation.comparison import ProtectedSets
    from uc_datasets.evaluation.sweep import dataset_to_tensors

    train_ds = _common.load_balanced_fashion_mnist("train", profile.n_train)
    test_ds = (_common.load_balanced_fashion_mnist("train", profile.n_test, skip=profile.n_train) if validation
               else _common.load_balanced_fashion_mnist("test", profile.n_test))
    clean, labels = dataset_to_tensors(train_ds, desc="clean train", progress=False)
    test, test_labels = dataset_to_tensors(test_ds, desc="clean test", progress=False)
    logger.info("Fashion-MNIST: %d train / %d %s images (balanced), %s px", len(labels), len(test_labels),
                "validation (from the train split)" if validation else "test", tuple(clean.shape[-2:]))
    return train_ds, ProtectedSets(clean, labels, test, test_labels)


def fit_and_protect(train_ds: datasets.Dataset, profile: StrengthProfile, *, progress: bool,
                    label_column: str | None = None, **overrides: Any) -> tuple[UCProtector, torch.Tensor, dict]:
    """Fit UC on the train subset (label-aware with ``label_column``), protect it with ``ds.map``, verify it.

    Returns (protector, protected uint8 tensor, record with timings, stats and verify report).
    """
    from uc_datasets import UnlearnableClusters, verify
    from uc_datasets.evaluation.sweep import dataset_to_tensors

    settings = dict(surrogate=SURROGATE, surrogate_image_size=profile.surrogate_image_size,
                    n_clusters=profile.n_clusters, epsilon=EPSILON, epochs=profile.fit_epochs,
                    batch_size=profile.fit_batch_size, ngf=profile.ngf, n_blocks=profile.n_blocks, seed=0)
    settings.update(overrides)
    t0 = time.perf_counter()
    protector = UnlearnableClusters(progress=progress, **settings).fit(train_ds, label_column=label_column)
    t1 = time.perf_counter()
    protected_ds = train_ds.map(protector, batched=True, load_from_cache_file=False, desc="protect")
    t2 = time.perf_counter()
    report = verify(train_ds, protected_ds, protector.config.epsilon, progress=False)
    images, _ = dataset_to_tensors(protected_ds, label_column=None, desc="protected", progress=False)
    stats = protector.metadata["stats"]
    cfg = protector.config
    passes = len(train_ds) * cfg.epochs * (cfg.n_clusters if cfg.train_on == "all" else 1)
    success = stats["attack_success"]
    logger.info("%s fit %.0f s (%s), attack success %s, verify: %s", protector.method, t1 - t0,
                {k: round(v, 1) for k, v in stats["seconds"].items()},
                "n/a (model-free)" if success is None else f"{100 * success:.1f}%", report.summary())
    if not report.passed:
        logger.error("verify FAILED: the protected set breaks the epsilon/lossless rules (recorded)")
    record = {
        "config": cfg.to_dict(), "fit_seconds": t1 - t0, "map_seconds": t2 - t1, "phase_seconds": stats["seconds"],
        "surrogate_fwd_bwd_passes": passes, "attack_success": stats["attack_success"],
        "cluster_sizes": stats["cluster_sizes"],
        "final_loss": [c[-1] if c else None for c in protector.metadata["loss_curves"]],
        "key_levels": protector.metadata.get("key_levels"), "method": protector.method,
        "verify": report.to_dict() | {"summary": report.summary()},
        "crafting": {k: stats[k] for k in ("error_min_errors", "contrastive_losses") if k in stats},
    }
    return protector, images, record


def profile_baseline_settings(method: str, profile: StrengthProfile) -> dict[str, Any]:
    """``fit_method`` keyword arguments of baseline ``method`` at ``profile``'s sizes."""
    return baseline_settings(method, epsilon=EPSILON, surrogate=SURROGATE,
                             surrogate_image_size=profile.surrogate_image_size,
                             model_width=profile.baseline_model_width, max_rounds=profile.baseline_max_rounds,
                             train_epochs=profile.baseline_train_epochs, advpoison_steps=profile.advpoison_steps,
                             deepconfuse_trials=profile.deepconfuse_trials,
                             deepconfuse_classifier_epochs=profile.deepconfuse_classifier_epochs)


def visual_meta(clean: torch.Tensor, protected: torch.Tensor) -> dict:
    """Mean luminance PSNR (dB) and SSIM of a protected set against the clean one (row columns)."""
    from uc_datasets.core.visual import visual_cost

    channels = 1 if bool((clean[:, 0] == clean[:, 1]).all()) else clean.shape[1]  # grey data: one channel
    cost = visual_cost(clean[:, :channels], protected[:, :channels])
    return {"psnr_db": cost["psnr"]["luminance"]["mean"], "ssim": cost["ssim"]["luminance"]["mean"]}


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
            sets.add(name, images, groups=sets.labels.numpy() if consistent else None, p=record["n_perturbations"],
                     label_source=record["label_source"], surrogate="none" if consistent else SURROGATE)
            records[name] = record
    return records


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


def profile_from_args(args: argparse.Namespace, **more: Any) -> StrengthProfile:
    """``args.profile`` with the command line's overrides (``--seeds``, ``--n-train``,
    ``--fit-epochs``, ``--victim-epochs`` and ``more``); None keeps the profile's value."""
    from dataclasses import replace

    overrides = {"seeds": tuple(args.seeds) if args.seeds else None, "n_train": args.n_train,
                 "fit_epochs": args.fit_epochs, "victim_epochs": args.victim_epochs, **more}
    profile = replace(PROFILES[args.profile], **{k: v for k, v in overrides.items() if v is not None})
    logger.info("profile %s: %s", args.profile, profile)
    return profile


def victim_runner(profile: StrengthProfile, sets: ProtectedSets, *, progress: bool) -> VictimRunner:
    """The profile's ResNet-18 victims, scored on ``sets``' test split."""
    from uc_datasets.evaluation.comparison import VictimRunner, VictimSettings

    settings = VictimSettings(epochs=profile.victim_epochs, batch_size=profile.victim_batch_size, lr=profile.victim_lr,
                              victim="resnet18", width=profile.victim_width, evals_per_epoch=profile.evals_per_epoch,
                              early_epochs=profile.early_epochs)
    return VictimRunner(settings, sets.test, progress=progress)


def row_keys(profile: StrengthProfile) -> dict[str, Any]:
    """The identity columns every row of a run shares (``comparison.sweep``'s ``row_keys``)."""
    return {"dataset": DATASET, "surrogate": SURROGATE, "victim": "resnet18", "width": profile.victim_width,
            "epochs": profile.victim_epochs, "protected_fraction": 1.0, "epsilon": "16/255",
            "n_train": profile.n_train, "n_test": profile.n_test}


def payload(args: argparse.Namespace, profile: StrengthProfile, mode: str, extra_config: dict, rows: list[dict],
            status: str, **sections: Any) -> dict:
    """A results file: the run record, the profile and ``extra_config``, the rows (checked against
    the results schema) and any further ``sections``."""
    from uc_datasets.evaluation.reporting import ROW_KEYS

    missing = [k for r in rows for k in ROW_KEYS if k not in r]
    assert not missing, f"rows miss schema keys {sorted(set(missing))}"
    return {"config": {**_common.run_record(), "profile": args.profile, "mode": mode, "status": status,
                       "dataset": DATASET, "surrogate": SURROGATE, "epsilon": "16/255", "victim": "resnet18",
                       "selection": "none: every setting is fixed by the profile; the test split is only scored",
                       **asdict(profile), **extra_config},
            "rows": rows, **sections}


# --- sweeps at the profile's settings -------------------------------------------------------

#: The pseudo-label attacker's embedding.
PSEUDO_ENCODER = "pixels-pca"


def sweep(profile: StrengthProfile, sets: ProtectedSets, plan: Plan, *, progress: bool,
          on_rows: Callable[[list[dict]], None] | None = None, runner: VictimRunner | None = None,
          cleans: dict | None = None) -> list[dict]:
    """``comparison.sweep`` with the profile's victims, seeds and row columns."""
    from uc_datasets.evaluation.comparison import sweep as library_sweep

    runner = runner if runner is not None else victim_runner(profile, sets, progress=progress)
    return library_sweep(sets, plan, runner, seeds=profile.seeds, row_keys=row_keys(profile), on_rows=on_rows,
                  cleans=cleans, progress=progress)


def pseudo(runner: VictimRunner, sets: ProtectedSets, methods: Sequence[str], profile: StrengthProfile, seed: int,
           on_rows: Callable[[list[dict]], None]) -> list[dict]:
    """The pseudo-label attacker (``comparison.pseudo_sweep``) at the profile's n values."""
    from uc_datasets.evaluation.comparison import pseudo_sweep

    return pseudo_sweep(runner, sets, methods, profile.pseudo_n_values, seed, row_keys=row_keys(profile),
                        encoder=PSEUDO_ENCODER, on_rows=on_rows)


def simclr(profile: StrengthProfile, sets: ProtectedSets, methods: Sequence[str], seed: int, *,
           progress: bool) -> list[dict]:
    """The SimCLR attacker (``comparison.simclr_sweep``) at the profile's epochs and width."""
    from uc_datasets.core.sources import FASHION_MNIST_CLASSES
    from uc_datasets.evaluation.comparison import simclr_sweep

    return simclr_sweep(sets, methods, seed, row_keys=row_keys(profile), class_names=FASHION_MNIST_CLASSES,
                        epochs=profile.simclr_epochs, width=profile.victim_width, progress=progress)


def add_controls(sets: ProtectedSets, clusters: Sequence[int], p: int, *, seed: int) -> None:
    """The noise controls at the profile's budget (``controls.add_noise_controls``)."""
    from uc_datasets.evaluation.controls import add_noise_controls

    add_noise_controls(sets, clusters, p, epsilon=EPSILON, surrogate=SURROGATE, seed=seed)


def default_variants(profile: StrengthProfile) -> list[tuple[str, dict]]:
    """(name, UnlearnableClusters overrides): the defaults, then one change at a time."""
    # train_on="all" makes p surrogate passes per image and epoch; it is compared at the same
    # number of surrogate passes as the default (fit_epochs / p epochs), i.e. at equal compute.
    all_epochs = max(1, profile.fit_epochs // profile.n_clusters)
    variants = [("defaults", {}), (f"train_on=all,epochs={all_epochs}", {"train_on": "all", "epochs": all_epochs}),
                ("loss=cosine", {"loss": "cosine"}), ("parametrization=direct", {"parametrization": "direct"})]
    variants += [(f"p={p}", {"n_clusters": p}) for p in profile.defaults_ps]
    return variants


# --- results files ---------------------------------------------------------------------------


def report(path: str | Path) -> str:
    """The markdown tables of a saved strength / defaults JSON (``--report PATH``)."""
    import json

    from uc_datasets.evaluation.tables import (
        agreement_markdown,
        attack_screen_markdown,
        attackers_markdown,
        final_markdown,
        pivot_markdown,
        results_markdown,
    )

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


# --- estimate ----------------------------------------------------------------------------------


def planned_work(profile: StrengthProfile, compare_defaults: bool, baselines: bool = False) -> dict[str, float]:
    """Work units of a run: surrogate fwd+bwd passes, forward passes, victim train/test images."""
    from uc_datasets.evaluation.controls import CONTROLS, CONTROLS_N10

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
