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
import gc
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from _baselines import ALL_BASELINES, CONSISTENT, baseline_settings, fit_baseline  # noqa: E402

from uc_datasets.methods.uc.config import LABEL_AWARE_DEFAULTS  # noqa: E402 - light: no torch

if TYPE_CHECKING:
    import datasets
    import numpy as np
    import torch

    from uc_datasets import UCProtector
    from uc_datasets.evaluation.relabel import Relabeling

logger = logging.getLogger("strength")

EPSILON = 16 / 255
SURROGATE = "efficientnet-lite0"
DATASET = "fashion-mnist"
#: Controls run under every labelling, and at n = 10 only.
CONTROLS = ("sign-per-cluster", "sign-per-class")
CONTROLS_N10 = ("random-per-image", "random-per-cluster", "random-per-class")
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


# --- data and protection -----------------------------------------------------------------


@dataclass
class TrainSets:
    """Clean and protected training tensors (uint8, (N, 3, H, W)) with their cluster keys."""

    clean: torch.Tensor
    labels: torch.Tensor  # original class of every train image
    test: torch.Tensor
    test_labels: torch.Tensor
    protected: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> images
    groups: dict[str, np.ndarray | None] = field(default_factory=dict)  # method -> pattern key per image
    meta: dict[str, dict] = field(default_factory=dict)  # method -> extra row fields


def load_data(profile: StrengthProfile, *, validation: bool = False) -> tuple[datasets.Dataset, TrainSets]:
    """Balanced train and test subsets of Fashion-MNIST as datasets and uint8 tensors.

    With ``validation`` the "test" images are a balanced validation subset of the train
    split, disjoint from the training images; choices made on it never see the test split.
    """
    from uc_datasets.evaluation.sweep import dataset_to_tensors

    train_ds = _common.load_balanced_fashion_mnist("train", profile.n_train)
    test_ds = (_common.load_balanced_fashion_mnist("train", profile.n_test, skip=profile.n_train) if validation
               else _common.load_balanced_fashion_mnist("test", profile.n_test))
    clean, labels = dataset_to_tensors(train_ds, desc="clean train", progress=False)
    test, test_labels = dataset_to_tensors(test_ds, desc="clean test", progress=False)
    logger.info("Fashion-MNIST: %d train / %d %s images (balanced), %s px", len(labels), len(test_labels),
                "validation (from the train split)" if validation else "test", tuple(clean.shape[-2:]))
    return train_ds, TrainSets(clean, labels, test, test_labels)


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


def noise_control(clean: torch.Tensor, keys: np.ndarray, epsilon: float, seed: int,
                  kind: str = "uniform") -> torch.Tensor:
    """``clean + round(255 * pattern)`` in uint8 levels, one pattern per distinct key.

    ``kind="uniform"`` draws U(-eps, eps) per pixel, ``"sign"`` draws +-eps per pixel.

    Grey data (all channels equal) gets grey patterns, as the protector gives grey images
    the luminance of delta. Returns uint8 images of the same shape.
    """
    import numpy as np
    import torch

    keys = torch.as_tensor(np.asarray(keys), dtype=torch.long)
    n, c, h, w = clean.shape
    grey = bool((clean[:, 0] == clean[:, 1]).all() and (clean[:, 1] == clean[:, 2]).all())
    gen = torch.Generator().manual_seed(seed)
    shape = (int(keys.max()) + 1, 1 if grey else c, h, w)
    if kind == "uniform":
        patterns = (torch.rand(shape, generator=gen) * 2 - 1) * epsilon
    elif kind == "sign":
        patterns = (torch.randint(0, 2, shape, generator=gen) * 2 - 1) * epsilon
    else:
        raise ValueError(f"kind must be 'uniform' or 'sign', got {kind!r}")
    levels = torch.round(patterns * 255).to(torch.int16)
    out = (clean.to(torch.int16) + levels[keys]).clamp(0, 255).to(torch.uint8)
    if int((out.to(torch.int16) - clean.to(torch.int16)).abs().max()) > round(epsilon * 255):
        raise RuntimeError("a noise control exceeds epsilon")  # cannot happen; guards the control
    return out


def add_controls(sets: TrainSets, clusters: np.ndarray, p: int, *, seed: int = 0) -> None:
    """The random-noise controls (see the module docstring), with their keys; ``seed`` redraws them."""
    import numpy as np

    n = len(sets.labels)
    keys = {"image": np.arange(n), "cluster": np.asarray(clusters), "class": sets.labels.numpy()}
    groups = {"image": n, "cluster": p, "class": int(sets.labels.max()) + 1}
    for i, method in enumerate(CONTROLS_N10 + CONTROLS):
        kind, key = method.split("-per-")
        sets.protected[method] = noise_control(sets.clean, keys[key], EPSILON, seed=1000 + i + 10_000 * seed,
                                               kind="sign" if kind == "sign" else "uniform")
        sets.groups[method] = None if key == "image" else keys[key]
        sets.meta[method] = {"p": groups[key], "surrogate": SURROGATE if key == "cluster" else "none"}


def profile_baseline_settings(method: str, profile: StrengthProfile) -> dict[str, Any]:
    """``fit_method`` keyword arguments of baseline ``method`` at ``profile``'s sizes."""
    return baseline_settings(method, epsilon=EPSILON, surrogate=SURROGATE,
                             surrogate_image_size=profile.surrogate_image_size,
                             model_width=profile.baseline_model_width, max_rounds=profile.baseline_max_rounds,
                             train_epochs=profile.baseline_train_epochs, advpoison_steps=profile.advpoison_steps,
                             deepconfuse_trials=profile.deepconfuse_trials,
                             deepconfuse_classifier_epochs=profile.deepconfuse_classifier_epochs)


def add_baselines(sets: TrainSets, train_ds: datasets.Dataset, profile: StrengthProfile, *,
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


def make_labelings(class_names: list[str], n_values: Sequence[int], encoder: str) -> list[Relabeling]:
    """The original labelling, then BERT-embedding K-means relabellings into each n.

    ``encoder`` may be a ``.npy`` file of precomputed class-name embeddings (one row per class,
    e.g. saved from ``embed_class_names(names, "offline")``) for a machine without the encoder.
    """
    import numpy as np

    from uc_datasets.core.class_names import embed_class_names
    from uc_datasets.evaluation.relabel import identity_relabeling, kmeans_relabeling

    labelings = [identity_relabeling(class_names)]
    if n_values:
        emb = np.load(encoder) if encoder.endswith(".npy") else embed_class_names(class_names, encoder)
        labelings += [kmeans_relabeling(class_names, n, embeddings=emb) for n in n_values]
    for lab in labelings[1:]:
        logger.info("n=%d: %s", lab.n_groups, " || ".join(lab.group_names))
    return labelings


def agreement(groups: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """NMI of groups and labels, and the accuracy of the best group -> label rule (majority).

    Example:
        >>> agreement([0, 0, 1, 1], [1, 1, 0, 1])[1]
        0.75
    """
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    groups, labels = np.asarray(groups), np.asarray(labels)
    table = np.zeros((groups.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (groups, labels), 1)
    return float(normalized_mutual_info_score(labels, groups)), float(table.max(1).sum() / len(labels))


def cluster_agreement(protector: UCProtector, train_ds: datasets.Dataset, labels: torch.Tensor,
                      labelings: list[Relabeling], ps: Sequence[int], *, progress: bool) -> tuple[list[dict], bool]:
    """K-means of the fit's surrogate features for every p in ``ps``; agreement with every labelling.

    Also returns whether the p = n_clusters K-means reproduces the protector's clusters.
    """
    import numpy as np

    from uc_datasets.core.working_set import WorkingSet
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


# --- victims ---------------------------------------------------------------------------------


class VictimRunner:
    """Trains a victim from scratch and scores it on the clean test split (library functions)."""

    def __init__(self, profile: StrengthProfile, sets: TrainSets, *, progress: bool):
        from accelerate import Accelerator

        from uc_datasets.evaluation.metrics import load_unlearnability
        from uc_datasets.evaluation.victims import TrainConfig

        self.profile, self.sets, self.progress = profile, sets, progress
        self.accelerator = Accelerator()
        self.metric = load_unlearnability()
        self.train_config = lambda seed, augment="crop": TrainConfig(
            profile.victim_epochs, profile.victim_batch_size, profile.victim_lr, augment=augment, seed=seed)
        self.seconds = 0.0
        self.trainings = 0
        # train_victim/predict end with accelerate's free_memory(), a full gc.collect(); with
        # the long-lived objects (data, modules) frozen out of the collector it is cheap.
        gc.freeze()

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int, defense: str, seed: int,
                 test_labels: list[int], clean: dict | None = None, augment: str = "crop") -> dict:
        """Train on ``images``/``labels`` (victim augmentation ``augment``) and return the final and
        best-epoch accuracy, chance and protection score (``uc_datasets.evaluation.sweep.train_and_score``);
        the scores are relative to ``clean`` (a clean victim's result) when given."""
        from uc_datasets.evaluation.sweep import train_and_score

        t0 = time.perf_counter()
        result = train_and_score("resnet18", images, labels, n_classes, self.sets.test, test_labels,
                                 self.train_config(seed, augment), defense=defense, width=self.profile.victim_width,
                                 clean=clean, accelerator=self.accelerator, progress=False, batch_size=512,
                                 metric=self.metric)
        self.seconds += time.perf_counter() - t0
        self.trainings += 1
        return result


def _row(profile: StrengthProfile, *, method: str, lab: Relabeling, defense: str, seed: int, clean: dict | None,
         result: dict | None, extra: dict, error: str | None = None) -> dict:
    """The evaluation side's results row (``reporting.result_row``) plus this benchmark's columns."""
    from uc_datasets.evaluation.reporting import result_row

    keys = {"dataset": DATASET, "method": method, "surrogate": SURROGATE, "victim": "resnet18",
            "width": profile.victim_width, "epochs": profile.victim_epochs, "n_classes": lab.n_groups,
            "relabel": lab.method, "defense": defense, "protected_fraction": 1.0, "seed": seed,
            "epsilon": "16/255", "n_train": profile.n_train, "n_test": profile.n_test, **extra}
    row = result_row(clean=clean, scores=result, **keys)
    if error:
        row["error"] = error
    return row


Plan = list[tuple[str, list[str], list["Relabeling"]]]


def clean_key(seed: int, defense: str, n_groups: int, relabel: str) -> tuple:
    """The key of one clean victim: trained once per seed, defence and labelling (``relabel`` is
    the labelling's method, as rows record it)."""
    return seed, defense, n_groups, relabel


def sweep(profile: StrengthProfile, sets: TrainSets, plan: Plan, *, progress: bool,
          on_rows: Callable[[list[dict]], None] | None = None, runner: VictimRunner | None = None,
          cleans: dict[tuple, tuple[dict | None, str | None]] | None = None) -> list[dict]:
    """For each seed and (defence, methods, labellings) in ``plan``: per labelling one clean
    victim (trained once per seed, defence and labelling, however often the plan names it)
    and one victim per method. A failed training is recorded in its row.

    ``cleans`` (kept by the caller) shares the clean victims between several sweeps, and
    ``runner`` reuses one :class:`VictimRunner`.
    """
    from tqdm.auto import tqdm

    runner = runner if runner is not None else VictimRunner(profile, sets, progress=progress)
    runner.sets = sets
    jobs = [(seed, defense, methods, lab) for seed in profile.seeds for defense, methods, labs in plan
            for lab in labs]
    cleans = {} if cleans is None else cleans
    n_clean = len({clean_key(seed, defense, lab.n_groups, lab.method) for seed, defense, _, lab in jobs} - set(cleans))
    bar = tqdm(total=n_clean + sum(len(m) for _, _, m, _ in jobs), desc="victims", disable=not progress)
    rows: list[dict] = []
    try:
        _sweep_jobs(runner, sets, jobs, rows, bar, on_rows, cleans)
    finally:
        gc.unfreeze()
        bar.close()
    logger.info("%d victims trained in %.0f s (%.1f s each)", runner.trainings, runner.seconds,
                runner.seconds / max(runner.trainings, 1))
    return rows


def _sweep_jobs(runner: VictimRunner, sets: TrainSets, jobs: list[tuple], rows: list[dict], bar: Any,
                on_rows: Callable[[list[dict]], None] | None, cleans: dict[tuple, tuple]) -> None:
    """Run ``jobs`` (seed, defence, methods, labelling), appending rows; ``on_rows`` after each job."""
    import torch

    profile = runner.profile
    for seed, defense, methods, lab in jobs:
        train_y = torch.from_numpy(lab.map_labels(sets.labels))
        test_y = lab.map_labels(sets.test_labels).tolist()
        key = clean_key(seed, defense, lab.n_groups, lab.method)
        if key not in cleans:
            clean, error = None, None
            try:
                clean = runner.accuracy(sets.clean, train_y, lab.n_groups, defense, seed, test_y)
            except Exception as err:  # noqa: BLE001 - recorded as measured
                logger.exception("clean victim failed")
                error = f"clean victim: {type(err).__name__}: {err}"
            cleans[key] = clean, error
            bar.update(1)
        clean, error = cleans[key]
        for method in methods:
            result, err_m = None, error
            if clean is not None:
                try:
                    result = runner.accuracy(sets.protected[method], train_y, lab.n_groups, defense, seed, test_y,
                                             clean=clean)
                except Exception as err:  # noqa: BLE001 - recorded as measured
                    logger.exception("%s victim failed", method)
                    err_m = f"{type(err).__name__}: {err}"
            extra = dict(sets.meta.get(method, {}))
            groups = sets.groups.get(method)
            if groups is not None:
                extra["nmi"], extra["cluster_rule_acc"] = agreement(groups, train_y.numpy())
            else:
                extra["nmi"] = extra["cluster_rule_acc"] = None
            rows.append(_row(profile, method=method, lab=lab, defense=defense, seed=seed, clean=clean,
                             result=result, extra=extra, error=err_m))
            bar.update(1)
            r = rows[-1]
            logger.info("%s n=%d %s seed %d: clean %s, protected %s, chance %s", defense, lab.n_groups, method, seed,
                        _pct(r["clean_acc"]), _pct(r["protected_acc"]), _pct(r["chance"]))
        if on_rows is not None:
            on_rows(rows)


# --- reporting -------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    from uc_datasets.evaluation.reporting import percent

    return percent(v, 1)


def _num(v: float | None, spec: str = ".3f") -> str:
    from uc_datasets.evaluation.reporting import number

    return number(v, spec)


def results_markdown(rows: list[dict], *, variant_key: str | None = None) -> str:
    """One line per row: defence, labels, method (or variant), agreement, accuracies, score;
    with ``variant_key`` also the fit's attack success and seconds."""
    head = ["defense", "labels", "n", variant_key or "method", "p", "NMI", "rule acc %", "clean %", "protected %",
            "chance %", "score"] + (["attack success %", "fit s"] if variant_key else [])
    body = []
    for r in rows:
        line = [r["defense"], r["relabel"], r["n_classes"], r[variant_key] if variant_key else r["method"],
                r.get("p", ""), _num(r.get("nmi")), _pct(r.get("cluster_rule_acc")), _pct(r["clean_acc"]),
                _pct(r["protected_acc"]), _pct(r["chance"]),
                _num(r["protection_score"], ".2f") + (" (error)" if r.get("error") else "")]
        if variant_key:
            line += [_pct(r.get("attack_success")), _num(r.get("fit_seconds"), ".0f")]
        body.append(line)
    return _common.markdown_table(head, body)


def pivot_markdown(rows: list[dict], *, key: str = "method", defense: str = "none") -> str:
    """Table 1 layout: one line per method (or ``key``), one column per labelling (n, largest
    first); each cell ``best-epoch score / final score (best-epoch accuracy % / final %)``, with
    the clean accuracies (best / final) as first line.

    Example:
        >>> r = {"method": "UC", "defense": "none", "n_classes": 10, "clean_acc": 0.8, "protected_acc": 0.1,
        ...      "protection_score": 0.0, "chance": 0.1, "clean_acc_best": 0.82}
        >>> pivot_markdown([r]).splitlines()[2]
        '| clean | 82.0 / 80.0 |'
    """
    rows = [r for r in rows if r["defense"] == defense]
    ns = sorted({r["n_classes"] for r in rows}, reverse=True)
    names = list(dict.fromkeys(r[key] for r in rows))
    cell = {(r[key], r["n_classes"]): (f"{_num(r.get('protection_score_best'), '.2f')} / "
                                       f"{_num(r['protection_score'], '.2f')} ({_pct(r.get('protected_acc_best'))} / "
                                       f"{_pct(r['protected_acc'])})")
            for r in rows}
    clean = {r["n_classes"]: f"{_pct(r.get('clean_acc_best'))} / {_pct(r['clean_acc'])}" for r in rows}
    chance = {r["n_classes"]: _pct(r["chance"]) for r in rows}
    body = [["clean"] + [clean[n] for n in ns], ["chance"] + [chance[n] for n in ns]]
    body += [[name] + [cell.get((name, n), "") for n in ns] for name in names]
    return _common.markdown_table([f"{key} \\ n"] + [str(n) for n in ns], body)


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


def agreement_markdown(entries: list[dict]) -> str:
    """NMI / rule accuracy of K-means clusters (rows: p) against every labelling (columns: n)."""
    ns = sorted({e["n_classes"] for e in entries}, reverse=True)
    ps = sorted({e["p"] for e in entries})
    cell = {(e["p"], e["n_classes"]): f"{e['nmi']:.2f} / {100 * e['cluster_rule_acc']:.0f}%" for e in entries}
    return _common.markdown_table(["p \\ n (NMI / rule acc)"] + [str(n) for n in ns],
                                  [[p] + [cell.get((p, n), "") for n in ns] for p in ps])


def plot_scores(rows: list[dict], path: str | Path, *, key: str = "method", defense: str = "none",
                title: str = "", score: str = "protection_score") -> Path:
    """Protection score (``score``: ``protection_score`` or ``protection_score_best``) against the
    number of classes n, one line per ``key`` (method or variant): mean over seeds with min-max
    bars. 1 = the clean victim's ability, 0 = chance.

    Example:
        >>> plot_scores(saved["rows"], "scores_vs_n.png")  # doctest: +SKIP
    """
    from collections import defaultdict

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["defense"] == defense and not r.get("attacker") and r.get(score) is not None:
            series[r[key]][r["n_classes"]].append(r[score])
    fig = Figure(figsize=(11, 5.0), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ns_all = sorted({n for by_n in series.values() for n in by_n})
    ax.plot(ns_all, [1.0] * len(ns_all), color="grey", linestyle=":", label="clean training (1 by definition)")
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    drawn = 0  # one colour per line; label-free solid, label-aware dashed
    for name, by_n in series.items():
        ns = sorted(by_n)
        if len(ns) < 2:  # controls run at one labelling only are tables, not lines
            continue
        mean = [sum(by_n[n]) / len(by_n[n]) for n in ns]
        lo = [m - min(by_n[n]) for m, n in zip(mean, ns)]
        hi = [max(by_n[n]) - m for m, n in zip(mean, ns)]
        seeds = max(len(v) for v in by_n.values())
        aware = "label-aware" in name
        color = colors[drawn % 10]
        drawn += 1
        ax.errorbar(ns, mean, yerr=[lo, hi], marker="o", markersize=4, capsize=3, color=color,
                    linestyle="--" if aware else "-",
                    label=f"{name} ({seeds} seed{'s' if seeds > 1 else ''})")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("number of classes n the victim trains on (10 = original labels)")
    ax.set_ylabel(("best-epoch " if score.endswith("_best") else "final-epoch ")
                  + "protection score (0 = chance, 1 = no protection)")
    ax.set_xticks(ns_all)
    ax.set_title(title or f"Fashion-MNIST, defence: {defense}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(str(path), dpi=110)
    return Path(path)


def plot_epochs(rows: list[dict], path: str | Path, *, n: int = 10, title: str = "") -> Path:
    """Test accuracy against the victim's epoch at ``n`` classes (no defence): the clean victim and
    each method's victim, mean over seeds; where the protected curve peaks is what an early-stopping
    hacker keeps.

    Example:
        >>> plot_epochs(saved["rows"], "accuracy_vs_epoch.png")  # doctest: +SKIP
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chosen = [r for r in rows if r["defense"] == "none" and not r.get("attacker") and r["n_classes"] == n
              and r.get("protected_acc_per_epoch")]
    fig = Figure(figsize=(9, 4.8), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cleans = {r["seed"]: r["clean_acc_per_epoch"] for r in chosen if r.get("clean_acc_per_epoch")}
    if cleans:
        curve = 100 * np.mean(list(cleans.values()), axis=0)
        ax.plot(range(1, len(curve) + 1), curve, color="black", linewidth=2, label=f"clean ({len(cleans)} seeds)")
    for method in dict.fromkeys(r["method"] for r in chosen):
        curves = [r["protected_acc_per_epoch"] for r in chosen if r["method"] == method]
        curve = 100 * np.mean(curves, axis=0)
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3,
                linestyle="--" if "label-aware" in method else "-", label=f"{method} ({len(curves)} seeds)")
    if chosen:
        ax.axhline(100 * chosen[0]["chance"], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("victim epoch")
    ax.set_ylabel(f"clean test accuracy % (n = {n})")
    ax.set_title(title or f"Fashion-MNIST, n = {n}: test accuracy during training")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(str(path), dpi=110)
    return Path(path)


def _payload(args: argparse.Namespace, profile: StrengthProfile, mode: str, extra_config: dict, rows: list[dict],
             status: str, **sections: Any) -> dict:
    from uc_datasets.evaluation.sweep import ROW_KEYS

    missing = [k for r in rows for k in ROW_KEYS if k not in r]
    assert not missing, f"rows miss schema keys {sorted(set(missing))}"
    return {"config": {**_common.run_record(), "profile": args.profile, "mode": mode, "status": status,
                       "dataset": DATASET, "surrogate": SURROGATE, "epsilon": "16/255", "victim": "resnet18",
                       "selection": "none: every setting is fixed by the profile; the test split is only scored",
                       **asdict(profile), **extra_config},
            "rows": rows, **sections}


# --- the two modes -----------------------------------------------------------------------------


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
        _common.write_json(args.output, _payload(args, profile, "strength", extra, rows + new_rows, status, **sections,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    for seed in profile.seeds:
        sets = TrainSets(base.clean, base.labels, base.test, base.test_labels)
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
    return _payload(args, profile, "strength", extra, rows, "complete", **sections)


#: The methods of the attacker table: UC, the best new family (label-aware tile), the sign-per-
#: class control and the best baseline of strength_baselines.json (AdvPoison with true labels:
#: score 0.64 at n = 10, the lowest of every baseline fit).
BEST_BASELINE = "advpoison"
ATTACK_METHODS = ("UC", LABEL_AWARE, "sign-per-class", BEST_BASELINE + CONSISTENT)
PSEUDO_ENCODER = "pixels-pca"


def pseudo_sweep(runner: VictimRunner, sets: TrainSets, methods: Sequence[str], n_values: Sequence[int], seed: int,
                 *, on_rows: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Victims on pseudo-labels: K-means of the hacker's own embedding (pixel PCA, fit on the set
    the victim trains on) into n groups; test labels = nearest centre of each clean test image.

    The clean victim clusters the clean set, each method's victim its protected set. Extra
    keys: ``pseudo_nmi_class`` (NMI of the pseudo-labels with the true classes) and
    ``pseudo_nmi_keys`` (with the method's perturbation keys), which say whether the hacker's
    clusters follow the classes or the protection.
    """
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    from uc_datasets.evaluation.relabel import pseudo_labels_for

    def labels_for(images: torch.Tensor):
        return pseudo_labels_for(images, sets.test, n, encoder=PSEUDO_ENCODER, seed=seed)

    rows: list[dict] = []
    for n in n_values:
        _, train_y, test_y = labels_for(sets.clean)
        clean, error = None, None
        try:
            clean = runner.accuracy(sets.clean, train_y, n, "none", seed, test_y)
        except Exception as err:  # noqa: BLE001 - recorded as measured
            logger.exception("clean pseudo-label victim failed")
            error = f"clean victim: {type(err).__name__}: {err}"
        for method in methods:
            m_lab, m_train_y, m_test_y = labels_for(sets.protected[method])
            result, err_m = None, error
            if clean is not None:
                try:
                    result = runner.accuracy(sets.protected[method], m_train_y, n, "none", seed, m_test_y, clean=clean)
                except Exception as err:  # noqa: BLE001 - recorded as measured
                    logger.exception("%s pseudo-label victim failed", method)
                    err_m = f"{type(err).__name__}: {err}"
            keys = sets.groups.get(method)
            extra = {**sets.meta.get(method, {}), "attacker": f"pseudo-labels n={n}",
                     "pseudo_nmi_class": float(normalized_mutual_info_score(sets.labels.numpy(), m_lab.train_labels)),
                     "pseudo_nmi_keys": (None if keys is None else
                                         float(normalized_mutual_info_score(np.asarray(keys), m_lab.train_labels))),
                     "nmi": None, "cluster_rule_acc": None}
            rows.append(_row(runner.profile, method=method, lab=m_lab, defense="none", seed=seed, clean=clean,
                             result=result, extra=extra, error=err_m))
            r = rows[-1]
            logger.info("pseudo n=%d %s seed %d: clean %s, protected %s (NMI with classes %.2f)", n, method, seed,
                        _pct(r["clean_acc"]), _pct(r["protected_acc"]), r["pseudo_nmi_class"])
        if on_rows is not None:
            on_rows(rows)
    return rows


def simclr_sweep(profile: StrengthProfile, sets: TrainSets, methods: Sequence[str], seed: int, *,
                 progress: bool) -> list[dict]:
    """The unsupervised attacker: SimCLR on the clean set and on each protected set, then a linear
    probe fitted on the clean labelled train images; rows score the probe on the clean test split."""
    from accelerate import Accelerator

    from uc_datasets.core.sources import FASHION_MNIST_CLASSES
    from uc_datasets.evaluation.metrics import load_unlearnability
    from uc_datasets.evaluation.relabel import identity_relabeling
    from uc_datasets.evaluation.simclr import SimCLRConfig, simclr_probe

    metric, accelerator = load_unlearnability(), Accelerator()
    config = SimCLRConfig(epochs=profile.simclr_epochs, batch_size=min(256, len(sets.labels)), seed=seed)
    test_y = sets.test_labels.tolist()
    lab = identity_relabeling(FASHION_MNIST_CLASSES)

    def probe(images: torch.Tensor) -> dict:
        result = simclr_probe(images, sets.clean, sets.labels, sets.test, sets.test_labels, config,
                              width=profile.victim_width, accelerator=accelerator, progress=progress)
        logger.info("SimCLR probe %.1f%% (loss %s, %.0f s)", 100 * result["probe_acc"],
                    [round(v, 2) for v in result["loss_history"]], result["seconds"])
        return result

    clean_probe = probe(sets.clean)
    clean = metric.compute(predictions=clean_probe["predictions"].tolist(), references=test_y)
    rows = []
    for method in methods:
        result = probe(sets.protected[method])
        scores = metric.compute(predictions=result["predictions"].tolist(), references=test_y,
                                clean_accuracy=clean["accuracy"])
        extra = {**sets.meta.get(method, {}), "attacker": SIMCLR_ATTACKER, "victim": "simclr-resnet18",
                 "epochs": profile.simclr_epochs, "simclr_loss": result["loss_history"],
                 "simclr_clean_loss": clean_probe["loss_history"], "nmi": None, "cluster_rule_acc": None}
        rows.append(_row(profile, method=method, lab=lab, defense="none", seed=seed, clean=clean, result=scores,
                         extra=extra))
    return rows


SIMCLR_ATTACKER = "SimCLR + linear probe"


def attacker_name(row: dict) -> str:
    """The attacker column of a row of the ``--attackers`` run."""
    return row["attacker"] if row.get("attacker") else _attacker_label(row["defense"], row["n_classes"])


def _attacker_label(defense: str, n_classes: int) -> str:
    """``labels n=N`` without a defence, ``<defence> n=N`` with one."""
    return f"labels n={n_classes}" if defense == "none" else f"{defense} n={n_classes}"


def attackers_markdown(rows: list[dict]) -> str:
    """Methods (lines) against attackers (columns): mean protection score over seeds [min, max];
    supervised labellings as their best epoch first, then the final epoch; the last column is
    the worst attacker (``reporting.worst_attacker``: the largest score over best and final
    epoch, n = 4..10, defences, pseudo-labels and SimCLR), per seed."""
    import numpy as np

    from uc_datasets.evaluation.reporting import worst_attacker

    columns: dict[str, list] = {}
    # every labelling first, from n = 10 down (runs that filled cells later append theirs)
    for r in sorted(rows, key=lambda r: (0, -r["n_classes"]) if attacker_name(r).startswith("labels ") else (1, 0)):
        name = attacker_name(r)
        if r.get("protected_acc_best") is not None:  # the early-stopping attacker first
            columns.setdefault(f"{name} (best epoch)", []).append((r["method"], r.get("protection_score_best")))
        columns.setdefault(name, []).append((r["method"], r["protection_score"]))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    columns["worst attacker"] = [(m, worst_attacker([r for r in rows if r["seed"] == s], m)["score"])
                                 for m in methods for s in seeds]

    def cell(values: list[float | None]) -> str:
        vals = [v for v in values if v is not None]
        if not vals:
            return "n/a"
        return f"{np.mean(vals):.2f}" + (f" [{min(vals):.2f}, {max(vals):.2f}]" if len(vals) > 1 else "")

    body = [[m] + [cell([v for mm, v in columns[c] if mm == m]) for c in columns] for m in methods]
    return _common.markdown_table(["method \\ attacker"] + list(columns), body)


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
        _common.write_json(args.output, _payload(args, profile, "attackers", extra, rows + new_rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    baseline_images = None
    for seed in profile.seeds:
        sets = TrainSets(base.clean, base.labels, base.test, base.test_labels)
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
        runner = VictimRunner(one, sets, progress=args.progress)
        plan: Plan = [("none", methods, labelings), ("orthogonal", methods, labelings[:1])]
        rows += sweep(one, sets, plan, progress=args.progress, on_rows=save, runner=runner)
        rows += pseudo_sweep(runner, sets, methods, profile.pseudo_n_values, seed, on_rows=save)
        rows += simclr_sweep(profile, sets, methods, seed, progress=args.progress)
        save([])
    save([], "complete")
    print(attackers_markdown(rows))
    return _payload(args, profile, "attackers", extra, rows, "complete")


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


def visual_meta(clean: torch.Tensor, protected: torch.Tensor) -> dict:
    """Mean luminance PSNR (dB) and SSIM of a protected set against the clean one (row columns)."""
    from uc_datasets.core.visual import visual_cost

    channels = 1 if bool((clean[:, 0] == clean[:, 1]).all()) else clean.shape[1]  # grey data: one channel
    cost = visual_cost(clean[:, :channels], protected[:, :channels])
    return {"psnr_db": cost["psnr"]["luminance"]["mean"], "ssim": cost["ssim"]["luminance"]["mean"]}


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
        _common.write_json(args.output, _payload(args, profile, "final", extra, rows + new_rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    cache = Path(args.final_cache) if args.final_cache else None

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
        sets = TrainSets(base.clean, base.labels, base.test, base.test_labels)
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
        runner = VictimRunner(one, sets, progress=args.progress)
        cleans = {**recorded_cleans, **load_cleans(cache)}

        def todo(*attacker_names: str) -> list[str]:
            """The methods that still lack a measured row for one of these attackers at this seed."""
            return [m for m in methods if any((m, seed, a) not in done for a in attacker_names)]

        plan: Plan = []
        for defense, labs in ((("none", labelings),) if "labels" in attackers else ()) + tuple(
                (d, labelings[:1]) for d in (FINAL_DEFENSES if "defenses" in attackers else ())) + (
                (("orthogonal", labelings[:1]),) if "orthogonal" in attackers else ()):
            for lab in labs:
                if todo_methods := todo(_attacker_label(defense, lab.n_groups)):
                    plan.append((defense, todo_methods, [lab]))
        rows += sweep(one, sets, plan, progress=args.progress, on_rows=save, runner=runner, cleans=cleans)
        save_cleans(cache, cleans)
        if "pseudo" in attackers and (todo_methods := todo(*(f"pseudo-labels n={n}" for n in profile.pseudo_n_values))):
            rows += pseudo_sweep(runner, sets, todo_methods, profile.pseudo_n_values, seed, on_rows=save)
        if "simclr" in attackers and (todo_methods := todo(SIMCLR_ATTACKER)):
            rows += simclr_sweep(profile, sets, todo_methods, seed, progress=args.progress)
        save([])
    save([], "complete")
    print(final_markdown(rows))
    return _payload(args, profile, "final", extra, rows, "complete")


def load_cleans(cache: Path | None) -> dict[tuple, tuple]:
    """The clean victims of earlier runs sharing ``--final-cache`` (same data, seeds and victims:
    a later run of other methods reuses them instead of retraining)."""
    import json

    path = None if cache is None else cache / "clean_victims.json"
    if path is None or not path.exists():
        return {}
    return {tuple(json.loads(k)): (v["clean"], v["error"]) for k, v in json.loads(path.read_text()).items()}


def cleans_from_rows(rows: list[dict]) -> dict[tuple, tuple]:
    """The clean victims recorded in earlier rows (``--final-skip`` files), keyed as the sweep
    keys them: a run that fills missing cells retrains no clean victim it already measured.
    Rows of the pseudo-label and SimCLR attackers have their own clean victims and are left out.

    Example:
        >>> row = {"seed": 0, "defense": "none", "n_classes": 10, "relabel": "original", "clean_acc": 0.8,
        ...        "clean_acc_best": 0.81, "chance": 0.1, "clean_best_epoch": 3, "clean_acc_per_epoch": [0.81]}
        >>> cleans_from_rows([row])[(0, "none", 10, "original")][0]["accuracy_best"]
        0.81
    """
    cleans: dict[tuple, tuple] = {}
    for r in rows:
        if r.get("attacker") or r.get("clean_acc") is None or r.get("clean_acc_best") is None:
            continue
        cleans[clean_key(r["seed"], r["defense"], r["n_classes"], r["relabel"])] = (
            {"accuracy": r["clean_acc"], "accuracy_best": r["clean_acc_best"], "chance": r["chance"],
             "best_epoch": r.get("clean_best_epoch"), "accuracy_per_epoch": r.get("clean_acc_per_epoch")}, None)
    return cleans


def save_cleans(cache: Path | None, cleans: dict[tuple, tuple]) -> None:
    """Add this run's clean victims to ``--final-cache`` (merged with what is there)."""
    import json

    if cache is None:
        return
    merged = {**load_cleans(cache), **cleans}
    _common.write_json(cache / "clean_victims.json",
                       {json.dumps(list(k)): {"clean": c, "error": e} for k, (c, e) in merged.items()})


def final_markdown(rows: list[dict]) -> str:
    """Per method: the best-epoch score (mean of seeds) at every n, the final-epoch score beside
    it, the worst attacker, and the visual cost."""
    import numpy as np

    from uc_datasets.evaluation.reporting import worst_attacker

    plain = [r for r in rows if r["defense"] == "none" and not r.get("attacker")]
    ns = sorted({r["n_classes"] for r in plain}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def mean(vals: list) -> str:
        vals = [v for v in vals if v is not None]
        return f"{np.mean(vals):.2f}" if vals else "n/a"

    body = []
    for m in methods:
        mine = [r for r in plain if r["method"] == m]
        cells = [f"{mean([r['protection_score_best'] for r in mine if r['n_classes'] == n])} "
                 f"({mean([r['protection_score'] for r in mine if r['n_classes'] == n])})" for n in ns]
        in_range = [r for r in mine if 4 <= r["n_classes"] <= 10]
        seeds = sorted({r["seed"] for r in in_range})
        worst_n = max((np.mean([r["protection_score_best"] for r in in_range if r["n_classes"] == n
                                and r["protection_score_best"] is not None] or [np.nan]) for n in
                       sorted({r["n_classes"] for r in in_range})), default=float("nan"))
        per_seed = [worst_attacker([r for r in rows if r["seed"] == s], m)["score"] for s in seeds]
        worst = mean(per_seed)
        vis = next((r for r in mine if r.get("psnr_db") is not None), {})
        body.append([m, *cells, f"{worst_n:.2f}", worst, number_or_na(vis.get("psnr_db"), ".2f"),
                     number_or_na(vis.get("ssim"), ".3f")])
    return _common.markdown_table(["method \\ n: best (final)", *map(str, ns), "worst n=4..10 (best)",
                                   "worst attacker", "PSNR dB", "SSIM"], body)


def number_or_na(v: float | None, spec: str) -> str:
    """``format(v, spec)``, ``n/a`` for None."""
    return "n/a" if v is None else format(v, spec)


def merge(paths: Sequence[str], output: str, rename: Mapping[str, str] | None = None) -> dict:
    """Merge strength runs of different seeds (run in parallel processes) into one file; an
    input that is itself a merge keeps its list of sources. ``rename`` maps method names of the
    inputs to the names of the output (rows and fits), all at once, so ``{"a": "b", "b": "a"}``
    swaps two names."""
    import json

    rename = dict(rename or {})
    parts = [json.loads(Path(p).read_text()) for p in paths]
    merged = parts[0]
    merged["config"]["merged_from"] = [
        source for p, part in zip(paths, parts)
        for source in part["config"].get("merged_from") or [
            {"path": str(p), "command": part["config"]["command"], "seeds": part["config"]["seeds"],
             "status": part["config"]["status"], "total_seconds": part.get("timings", {}).get("total_seconds")}]]
    merged["config"]["seeds"] = sorted({s for part in parts for s in part["config"]["seeds"]})
    merged["config"]["status"] = "complete" if all(p["config"]["status"] == "complete" for p in parts) else "partial"
    merged["rows"] = [{**r, "method": rename.get(r["method"], r["method"])} for part in parts for r in part["rows"]]
    if rename:
        merged["config"]["renamed_methods"] = {**merged["config"].get("renamed_methods", {}), **rename}
    for part in parts[1:]:
        for seed, fits in part["config"].get("fits", {}).items():  # runs of other methods for the same seed add up
            merged["config"]["fits"].setdefault(seed, {}).update(fits)
        if not merged.get("cluster_agreement"):
            merged["cluster_agreement"] = part.get("cluster_agreement", [])
    merged["config"]["fits"] = {seed: {rename.get(m, m): rec for m, rec in fits.items()}
                                for seed, fits in merged["config"].get("fits", {}).items()}
    _common.write_json(output, merged)
    return merged


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


def validation_sweep(args: argparse.Namespace, profile: StrengthProfile, mode: str, sets: TrainSets,
                     names: list[str], labelings: list[Relabeling], t_start: float, extra: dict) -> dict:
    """Victims for every variant in ``names`` under ``labelings``, scored on the validation subset
    (a choice is made from these rows, so never on the test split); writes and prints the rows."""
    extra = {"encoder": args.encoder, **extra,
             "scored_on": f"validation: {profile.n_test} train-split images disjoint from the fit images",
             "selection": "the defaults are chosen from these rows (validation subset); the test split is not read",
             "relabelings": {str(lab.n_groups): lab.to_dict() for lab in labelings}}

    def save(rows: list[dict], status: str = "partial") -> None:
        _common.write_json(args.output, _payload(args, profile, mode, extra, rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    rows = sweep(profile, sets, [("none", names, labelings)], progress=args.progress, on_rows=save)
    save(rows, "complete")
    print(pivot_markdown(rows, key="variant"))
    print(results_markdown(rows, variant_key="variant"))
    return _payload(args, profile, mode, extra, rows, "complete")


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


def fit_variants(args: argparse.Namespace, profile: StrengthProfile, train_ds: datasets.Dataset, sets: TrainSets,
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
        _common.write_json(args.output, _payload(args, profile, "attack-screen", extra, rows, status,
                                                 timings={"total_seconds": time.perf_counter() - t_start}))

    plan: Plan = [(a, vs, [lab]) for a, vs in screen.items() if a != "simclr" and vs]
    rows = sweep(profile, sets, plan, progress=args.progress, on_rows=save)
    save(rows)
    if screen["simclr"]:
        rows += simclr_sweep(profile, sets, screen["simclr"], profile.seeds[0], progress=args.progress)
    save(rows, "complete")
    print(attack_screen_markdown(rows))
    return _payload(args, profile, "attack-screen", extra, rows, "complete")


def attack_screen_markdown(rows: list[dict]) -> str:
    """Variant x attacker: best-epoch score / final-epoch score (SimCLR: the probe's score)."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    attackers = list(dict.fromkeys(attacker_name(r) for r in rows))
    cell = {(r["variant"], attacker_name(r)): r for r in rows}

    def fmt(r: dict | None) -> str:
        if r is None:
            return ""
        if r.get("protection_score") is None:
            return "failed"
        best = r.get("protection_score_best")
        return f"{r['protection_score']:.2f}" if best is None else f"{best:.2f} / {r['protection_score']:.2f}"

    lines = ["| variant | " + " | ".join(attackers) + " | PSNR dB | SSIM |",
             "| --- |" + " --- |" * (len(attackers) + 2)]
    for v in variants:
        any_row = next(r for r in rows if r["variant"] == v)
        lines.append(f"| {v} | " + " | ".join(fmt(cell.get((v, a))) for a in attackers)
                     + f" | {any_row.get('psnr_db', float('nan')):.2f} | {any_row.get('ssim', float('nan')):.3f} |")
    return "\n".join(lines)


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

            saved = json.loads(Path(args.report).read_text())
            key = "variant" if saved["config"].get("mode") in ("compare-defaults", "screen") else "method"
            plot_scores(saved["rows"], args.plot, key=key)
            if saved["config"].get("mode") == "final":
                stem = Path(args.plot)
                plot_scores(saved["rows"], stem.with_name(stem.stem + "_best.png"), key=key,
                            score="protection_score_best")
                plot_epochs(saved["rows"], stem.with_name(stem.stem + "_epochs.png"))
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
