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
from typing import TYPE_CHECKING, Any

import _common
from _baselines import ALL_BASELINES, baseline_settings

if TYPE_CHECKING:
    import datasets
    import torch

    from uc_datasets import UCProtector
    from uc_datasets.evaluation.comparison import ProtectedSets, VictimRunner

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
    report = verify(train_ds, protected_ds, EPSILON, progress=False)
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


def victim_runner(profile: StrengthProfile, sets: ProtectedSets, *, progress: bool) -> VictimRunner:
    """The profile's ResNet-18 victims, scored on ``sets``' test split."""
    from uc_datasets.evaluation.comparison import VictimRunner, VictimSettings

    settings = VictimSettings(epochs=profile.victim_epochs, batch_size=profile.victim_batch_size, lr=profile.victim_lr,
                              victim="resnet18", width=profile.victim_width)
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
