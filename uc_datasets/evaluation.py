"""Label-agnostic evaluation sweep: relabel -> train victims -> test on the clean test split.

For every labelling (the original labels, then the paper's BERT + K-means relabelling into n
groups for each n in the range), every victim, defence and seed, a victim is trained on the
clean train split and on the protected one (optionally only a fraction of it protected), and
both are tested on the clean test split relabelled the same way. Each (labelling, victim,
defence, fraction, seed) gives one row; see :data:`ROW_KEYS`.

Outputs (:func:`write_outputs`): ``results.json`` (``{"config": ..., "rows": [...]}``),
``results.md`` (a markdown table) and ``accuracy_vs_n.png`` (the paper's Figure 4a).
Accuracies are fractions in [0, 1]; the table and the plot show percentages.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_evaluate_arguments(parser)
    >>> args = parser.parse_args(["--clean", "clean_dir", "--protected", "protected_dir", "--epochs", "2"])
    >>> args.victims, args.defenses, args.protected_fraction
    (['resnet18'], ['none'], [1.0])
"""

from __future__ import annotations

import argparse
import datetime
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from .defenses import DEFENSES, get_defense
from .eval_data import (
    MIX_MODES,
    EvaluationData,
    dataset_to_tensors,
    load_evaluation_data,
    load_image_dataset,
    protected_mask,
    read_protection_metadata,
    read_run_summary,
)
from .metrics import load_unlearnability
from .relabel import (
    DEFAULT_ENCODER,
    PAPER_N_RANGE,
    PSEUDO_ENCODERS,
    PseudoLabeling,
    Relabeling,
    default_n_range,
    embed_class_names,
    identity_relabeling,
    image_features,
    kmeans_relabeling,
    pseudo_labeling,
    validate_n,
)
from .reporting import ROW_KEYS, plot_accuracy_vs_n, results_table, write_outputs
from .victims import (
    AUGMENTATIONS,
    VICTIMS,
    TrainConfig,
    build_victim,
    canonical_victim_name,
    train_and_predict,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ROW_KEYS",
    "EvaluationConfig",
    "EvaluationData",
    "add_evaluate_arguments",
    "dataset_to_tensors",
    "load_evaluation_data",
    "load_image_dataset",
    "plot_accuracy_vs_n",
    "protected_mask",
    "read_protection_metadata",
    "read_run_summary",
    "results_table",
    "run_evaluate",
    "run_sweep",
    "score_epochs",
    "simclr_rows",
    "train_and_score",
    "write_outputs",
]

STEMS = {"auto": None, "small": True, "imagenet": False}
_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name != "seed")


# --- configuration ------------------------------------------------------------------------


@dataclass
class EvaluationConfig:
    """Everything the sweep needs besides the data. Defaults follow the reference protocol.

    Example:
        >>> EvaluationConfig(victims=["resnet18"], epochs=1).n_values is None
        True
    """

    victims: list[str] = field(default_factory=lambda: ["resnet18"])
    defenses: list[str] = field(default_factory=lambda: ["none"])
    protected_fractions: list[float] = field(default_factory=lambda: [1.0])
    mix_by: str = "sample"
    seeds: list[int] = field(default_factory=lambda: [0])
    n_values: list[int] | None = None  # None: the paper's 5..36, clipped to [2, C - 1]
    include_original: bool = True
    # Victim training: the same fields and defaults as victims.TrainConfig (one source).
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    momentum: float = TrainConfig.momentum
    weight_decay: float = TrainConfig.weight_decay
    augment: str = TrainConfig.augment
    width: float = 1.0
    small_input: bool | None = None
    encoder: str = DEFAULT_ENCODER
    relabel_seed: int = 0
    pseudo_n_values: list[int] = field(default_factory=list)  # pseudo-label K-means of image embeddings
    pseudo_encoder: str = "pixels-pca"
    simclr_epochs: int = 0  # > 0: also the unsupervised (SimCLR + linear probe) attacker
    simclr_batch_size: int = 256
    dataset: str = "dataset"
    method: str = "unknown"
    surrogate: str = "unknown"

    def __post_init__(self) -> None:
        self.victims = [canonical_victim_name(v) for v in self.victims]
        for spec in self.defenses:
            get_defense(spec)  # raises on unknown names / bad parameters
        for fraction in self.protected_fractions:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"protected fraction must be in [0, 1]; got {fraction}.")
        if self.mix_by not in MIX_MODES:
            raise ValueError(f"mix_by must be one of {MIX_MODES}; got {self.mix_by!r}.")
        if not (self.victims and self.defenses and self.protected_fractions and self.seeds):
            raise ValueError("victims, defenses, protected fractions and seeds must each list at least one value.")
        if self.simclr_epochs < 0 or self.simclr_batch_size < 2:
            raise ValueError(f"simclr_epochs must be >= 0 and simclr_batch_size >= 2; got {self.simclr_epochs} "
                             f"and {self.simclr_batch_size}.")
        for n in self.pseudo_n_values:
            if int(n) < 2:
                raise ValueError(f"pseudo-label n must be >= 2; got {n}.")
        if self.n_values is not None and not self.n_values and not self.include_original and not self.pseudo_n_values:
            raise ValueError("Nothing to evaluate: no n values and the original labels are excluded.")
        self.train_config(0)  # validates the training fields

    def train_config(self, seed: int) -> TrainConfig:
        """The victims' :class:`~uc_datasets.victims.TrainConfig` for one seed."""
        return TrainConfig(**{name: getattr(self, name) for name in _TRAIN_FIELDS}, seed=seed)


def _labelings(class_names: list[str], config: EvaluationConfig) -> list[Relabeling]:
    labelings = [identity_relabeling(class_names)] if config.include_original else []
    n_values = default_n_range(len(class_names)) if config.n_values is None else list(config.n_values)
    for n in n_values:
        validate_n(n, len(class_names))
    if n_values:
        embeddings = embed_class_names(class_names, config.encoder)
        for n in n_values:
            labelings.append(kmeans_relabeling(class_names, n, embeddings=embeddings, seed=config.relabel_seed))
    return labelings


def score_epochs(per_epoch: list[torch.Tensor], references: list[int], clean: dict | None = None,
                 metric=None) -> dict:
    """Final and best-epoch scores of one victim from its per-epoch test predictions.

    Returns the metric's ``accuracy``, ``chance`` and ``protection_score`` for the final epoch,
    plus ``accuracy_best`` / ``protection_score_best`` for the epoch with the highest test
    accuracy (``best_epoch``, 1-based): the attacker's best case, early stopping with an
    oracle. With ``clean`` (the clean victim's scores) the protection scores are relative to
    it: final to final, best to best.

    Example:
        >>> per_epoch = [torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([1, 1])]
        >>> s = score_epochs(per_epoch, [0, 1])
        >>> s["accuracy"], s["accuracy_best"], s["best_epoch"]
        (0.5, 1.0, 2)
    """
    if not per_epoch:
        raise ValueError("score_epochs needs the predictions of at least one epoch.")
    metric = metric or load_unlearnability()
    refs = torch.as_tensor(references)
    accuracies = [float((p == refs).float().mean()) for p in per_epoch]
    best = max(range(len(accuracies)), key=accuracies.__getitem__)
    final = metric.compute(predictions=per_epoch[-1].tolist(), references=list(references),
                           clean_accuracy=None if clean is None else clean["accuracy"])
    best_scores = metric.compute(predictions=per_epoch[best].tolist(), references=list(references),
                                 clean_accuracy=None if clean is None else clean["accuracy_best"])
    return {**final, "accuracy_best": best_scores["accuracy"],
            "protection_score_best": best_scores["protection_score"], "best_epoch": best + 1}


def train_and_score(
    victim_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    test_images: torch.Tensor,
    test_labels: list[int],
    train_config: TrainConfig,
    *,
    defense: str = "none",
    width: float = 1.0,
    small_input: bool | None = None,
    clean: dict | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    batch_size: int = 256,
    metric=None,
) -> dict:
    """Build a victim from scratch, train it on ``images`` / ``labels`` and score it on the test
    split after every epoch (:func:`score_epochs`). The one victim routine of the evaluation
    side; the sweep and the strength benchmark both call it.

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
        >>> s = train_and_score("resnet18", x, y, 2, x, y.tolist(), TrainConfig(epochs=2, batch_size=4),
        ...                     width=0.125, progress=False)
        >>> s["accuracy_best"] >= s["accuracy"]
        True
    """
    victim = build_victim(victim_name, num_classes, width=width, image_size=int(images.shape[-1]),
                          small_input=small_input, seed=train_config.seed)
    per_epoch = train_and_predict(victim, images, labels, train_config, test_images, defense=get_defense(defense),
                                  accelerator=accelerator, progress=progress, batch_size=batch_size)
    return score_epochs(per_epoch, test_labels, clean, metric)


def _pseudo_labels(images: torch.Tensor, test_images: torch.Tensor, n: int, config: EvaluationConfig,
                   image_size: int | None) -> tuple[PseudoLabeling, torch.Tensor, list[int]]:
    train_features, test_features = image_features(images, [test_images], encoder=config.pseudo_encoder,
                                                   image_size=image_size)
    labeling = pseudo_labeling(train_features, n, seed=config.relabel_seed, encoder=config.pseudo_encoder)
    return labeling, torch.from_numpy(labeling.train_labels), labeling.assign(test_features).tolist()


def _unprotected(clean: dict) -> dict:
    """Fraction 0: the protected victim is the clean one (score 1, or undefined at chance)."""
    return {**clean, "protection_score": 1.0 if clean["accuracy"] > clean["chance"] else None,
            "protection_score_best": 1.0 if clean["accuracy_best"] > clean["chance"] else None}


def _row(config: EvaluationConfig, *, victim: str, n: int, relabel: str, defense: str, fraction: float, seed: int,
         clean: dict, scores: dict) -> dict:
    return {
        "dataset": config.dataset,
        "method": config.method,
        "surrogate": config.surrogate,
        "victim": victim,
        "width": config.width,
        "epochs": config.epochs,
        "n_classes": n,
        "relabel": relabel,
        "defense": defense,
        "protected_fraction": fraction,
        "seed": seed,
        "clean_acc": clean["accuracy"],
        "protected_acc": scores["accuracy"],
        "chance": scores["chance"],
        "protection_score": scores["protection_score"],
        "clean_acc_best": clean.get("accuracy_best"),
        "protected_acc_best": scores.get("accuracy_best"),
        "protection_score_best": scores.get("protection_score_best"),
    }


def simclr_rows(data: EvaluationData, config: EvaluationConfig, victim_name: str, seed: int,
                protected_images: Callable[[float, int], torch.Tensor], *, accelerator: Accelerator | None = None,
                progress: bool = True, metric=None) -> list[dict]:
    """The unsupervised attacker for one backbone and seed, one row per protected fraction.

    SimCLR (:mod:`uc_datasets.simclr`) is trained on the clean training images and, for each
    fraction, on the (partly) protected ones; a linear probe on the frozen features, fit on
    the *clean* labelled training images with the original labels, is scored on the clean
    test split. ``clean_acc`` / ``protected_acc`` are the two probes' accuracies
    (``victim = "simclr-<backbone>"``, ``relabel = "original"``); a probe has no epochs, so
    the best-epoch keys are None.
    """
    from .simclr import SimCLRConfig, simclr_probe

    metric = metric or load_unlearnability()
    simclr = SimCLRConfig(epochs=config.simclr_epochs, batch_size=config.simclr_batch_size, seed=seed)
    test_y = data.test_labels.tolist()
    n = len(data.class_names)

    def probe(images: torch.Tensor) -> torch.Tensor:
        result = simclr_probe(images, data.train_images, data.train_labels, data.test_images, data.test_labels,
                              simclr, arch=victim_name, width=config.width, small_input=config.small_input,
                              accelerator=accelerator, progress=progress)
        return result["predictions"]

    clean_pred = probe(data.train_images)
    clean = metric.compute(predictions=clean_pred.tolist(), references=test_y)
    rows = []
    for fraction in dict.fromkeys(float(f) for f in config.protected_fractions):
        pred = clean_pred if fraction == 0 else probe(protected_images(fraction, seed))
        scores = metric.compute(predictions=pred.tolist(), references=test_y, clean_accuracy=clean["accuracy"])
        rows.append(_row(config, victim=f"simclr-{victim_name}", n=n, relabel="original", defense="none",
                         fraction=fraction, seed=seed, clean={**clean, "accuracy_best": None},
                         scores={**scores, "accuracy_best": None, "protection_score_best": None}))
    return rows


def run_sweep(
    data: EvaluationData,
    config: EvaluationConfig,
    *,
    accelerator: Accelerator | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict[str, dict]]:
    """Train and test every (labelling, victim, defence, fraction, seed); return the rows and
    the relabelling used for each n (``{str(n): {"method", "mapping", "groups"}}``).

    Labellings: the original labels, the class-name relabellings (``n_values``) and, for each
    of ``pseudo_n_values``, pseudo-labels: K-means of the hacker's image embeddings
    (``pseudo_encoder``), computed on the images each victim is trained on (clean or
    protected), the test labels being the nearest centre of each clean test image. The
    clean-trained victim does not depend on the protected fraction, so it is trained once per
    (labelling, victim, defence, seed); fraction 0 reuses it. Every row has the final and the
    best-epoch scores (:func:`score_epochs`).

    Example:
        >>> rows, labelings = run_sweep(data, EvaluationConfig(epochs=1, n_values=[2]))  # doctest: +SKIP
    """
    accelerator = accelerator or Accelerator()
    metric = load_unlearnability()
    labelings = _labelings(data.class_names, config)
    fractions = list(dict.fromkeys(float(f) for f in config.protected_fractions))
    trainings_per_case = 1 + sum(1 for f in fractions if f > 0)
    n_labelings = len(labelings) + len(config.pseudo_n_values)
    total = len(config.seeds) * len(config.victims) * len(config.defenses) * n_labelings * trainings_per_case
    total += len(config.seeds) * len(config.victims) * trainings_per_case * bool(config.simclr_epochs)
    masks = {
        (f, seed): protected_mask(len(data.train_labels), f, seed, by=config.mix_by, labels=data.train_labels)
        for f in fractions
        for seed in config.seeds
    }
    rows: list[dict] = []
    pseudo_info: dict[str, dict] = {}
    bar = tqdm(total=total, desc="evaluate", unit="run", disable=not (progress and accelerator.is_main_process))

    def score(victim_name: str, images: torch.Tensor, labels: torch.Tensor, n: int, test_y: list[int], spec: str,
              seed: int, clean: dict | None = None) -> dict:
        result = train_and_score(
            victim_name, images, labels, n, data.test_images, test_y, config.train_config(seed), defense=spec,
            width=config.width, small_input=config.small_input, clean=clean, accelerator=accelerator,
            progress=progress, batch_size=2 * config.batch_size, metric=metric,
        )
        bar.update(1)
        return result

    def protected_images(fraction: float, seed: int) -> torch.Tensor:
        mask = masks[(fraction, seed)][:, None, None, None]
        return torch.where(mask, data.protected_images, data.train_images)

    def log(row: dict) -> None:
        if accelerator.is_main_process:
            logger.info(
                "%s %s n=%d (%s) fraction=%.2f seed=%d: clean %.2f%%, protected %.2f%% (best epoch %s), "
                "chance %.2f%%", row["victim"], row["defense"], row["n_classes"], row["relabel"],
                row["protected_fraction"], row["seed"], 100 * row["clean_acc"], 100 * row["protected_acc"],
                "n/a" if row["protected_acc_best"] is None else f"{100 * row['protected_acc_best']:.2f}%",
                100 * row["chance"],
            )

    for seed in config.seeds:
        for victim_name in config.victims:
            for spec in config.defenses:
                for labeling in labelings:
                    train_y = torch.from_numpy(labeling.map_labels(data.train_labels))
                    test_y = labeling.map_labels(data.test_labels).tolist()
                    bar.set_postfix_str(f"{victim_name} {spec} n={labeling.n_groups} seed={seed}")
                    clean = score(victim_name, data.train_images, train_y, labeling.n_groups, test_y, spec, seed)
                    for fraction in fractions:
                        if fraction == 0:
                            scores = _unprotected(clean)
                        else:
                            scores = score(victim_name, protected_images(fraction, seed), train_y,
                                           labeling.n_groups, test_y, spec, seed, clean)
                        rows.append(_row(config, victim=victim_name, n=labeling.n_groups, relabel=labeling.method,
                                         defense=spec, fraction=fraction, seed=seed, clean=clean, scores=scores))
                        log(rows[-1])
                for n in config.pseudo_n_values:
                    bar.set_postfix_str(f"{victim_name} {spec} pseudo n={n} seed={seed}")
                    image_size = data.image_size if config.pseudo_encoder != "pixels-pca" else None
                    clean_lab, train_y, test_y = _pseudo_labels(data.train_images, data.test_images, n, config,
                                                                image_size)
                    pseudo_info[f"pseudo-{n}-clean"] = clean_lab.to_dict()
                    clean = score(victim_name, data.train_images, train_y, n, test_y, spec, seed)
                    for fraction in fractions:
                        if fraction == 0:
                            scores = _unprotected(clean)
                        else:
                            images = protected_images(fraction, seed)
                            lab, p_train_y, p_test_y = _pseudo_labels(images, data.test_images, n, config, image_size)
                            pseudo_info[f"pseudo-{n}-protected-{fraction:g}-seed{seed}"] = lab.to_dict()
                            scores = score(victim_name, images, p_train_y, n, p_test_y, spec, seed, clean)
                        rows.append(_row(config, victim=victim_name, n=n, relabel=clean_lab.method, defense=spec,
                                         fraction=fraction, seed=seed, clean=clean, scores=scores))
                        log(rows[-1])
        if config.simclr_epochs:
            for victim_name in config.victims:
                rows.extend(simclr_rows(data, config, victim_name, seed, protected_images, accelerator=accelerator,
                                        progress=progress, metric=metric))
                for row in rows[-len(fractions):]:
                    log(row)
                bar.update(1 + sum(1 for f in fractions if f > 0))
    bar.close()
    relabelings = {str(r.n_groups): r.to_dict() for r in labelings}
    relabelings.update(pseudo_info)
    return rows, relabelings


# --- CLI / recipe entry points ------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser`` (used by the recipe and ``uc-datasets evaluate``).

    Example:
        >>> p = argparse.ArgumentParser(); add_evaluate_arguments(p)
        >>> p.parse_args(["--clean", "c", "--protected", "p", "--n-range", "5", "9"]).n_range
        [5, 9]
    """
    data = parser.add_argument_group("data")
    data.add_argument("--clean", required=True, help="clean DatasetDict: save_to_disk directory or Hub id")
    data.add_argument("--protected", required=True,
                      help="protected dataset; its train split is the clean one, perturbed, row by row")
    data.add_argument("--image-column", default="image")
    data.add_argument("--label-column", default="label")
    data.add_argument("--train-split", default="train")
    data.add_argument("--test-split", default="test")
    data.add_argument("--class-names", nargs="+", default=None, metavar="NAME",
                      help="class names in label order (needed when the label column is a plain int)")
    data.add_argument("--image-size", type=int, default=None,
                      help="resize (shorter side) and centre-crop to this size; default: native size")
    data.add_argument("--dataset-name", default=None, help="name in the results (default: the clean source's name)")
    data.add_argument("--method", default=None, help="protection method, if the protected dataset does not record it")
    data.add_argument("--surrogate", default=None, help="surrogate model, if the protected dataset does not record it")

    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--victims", nargs="+", default=["resnet18"], metavar="VICTIM",
                       help=f"victim models: {', '.join(VICTIMS)}")
    sweep.add_argument("--defenses", nargs="+", default=["none"], metavar="DEFENSE",
                       help=f"training-time defences, one run each: {', '.join(DEFENSES)}; "
                            "parameters as name:key=value,... e.g. pgd:eps=4/255,steps=5")
    sweep.add_argument("--protected-fraction", nargs="+", type=float, default=[1.0], metavar="F",
                       help="fraction(s) of the train set that is protected (the rest stays clean)")
    sweep.add_argument("--mix-by", choices=MIX_MODES, default="sample",
                       help="protect a random fraction of rows, or of whole classes (the paper's Sec. 4.6)")
    sweep.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED")
    sweep.add_argument("--n-range", nargs=2, type=int, default=None, metavar=("LOW", "HIGH"),
                       help=f"relabel into n = LOW..HIGH groups (default: {PAPER_N_RANGE[0]}..{PAPER_N_RANGE[1]}, "
                            "clipped to [2, C-1])")
    sweep.add_argument("--n-step", type=int, default=1, help="step between n values")
    sweep.add_argument("--no-original", action="store_true", help="skip the original labels")
    sweep.add_argument("--encoder", default=DEFAULT_ENCODER,
                       help="class-name encoder: a Hub id (bert-base-uncased), a local path, or 'offline' (MiniLM)")
    sweep.add_argument("--relabel-seed", type=int, default=0, help="K-means seed of the relabelling")
    sweep.add_argument("--pseudo-labels", nargs="+", type=int, default=[], metavar="N",
                       help="also train on pseudo-labels: K-means of the hacker's image embeddings into N groups "
                            "(not a function of the class); the test labels are each test image's nearest centre")
    sweep.add_argument("--simclr-epochs", type=int, default=0, metavar="E",
                       help="also the unsupervised attacker: SimCLR for E epochs on the clean and on the protected "
                            "images, then a linear probe on the clean labelled images (0: off)")
    sweep.add_argument("--simclr-batch-size", type=int, default=256)
    sweep.add_argument("--pseudo-encoder", default="pixels-pca",
                       help=f"image encoder for --pseudo-labels: {', '.join(PSEUDO_ENCODERS)} (offline) or a "
                            "surrogate name (Hub id, local path, efficientnet-lite0)")

    training = parser.add_argument_group("victim training")
    training.add_argument("--epochs", type=int, default=90)
    training.add_argument("--batch-size", type=int, default=128)
    training.add_argument("--lr", type=float, default=0.1)
    training.add_argument("--momentum", type=float, default=0.9)
    training.add_argument("--weight-decay", type=float, default=5e-4)
    training.add_argument("--width", type=float, default=1.0, help="channel multiplier (e.g. 0.25 for CPU runs)")
    training.add_argument("--augment", choices=AUGMENTATIONS, default="crop",
                          help="random crop (pad 1/8) or random-resized crop, each with horizontal flip")
    training.add_argument("--stem", choices=tuple(STEMS), default="auto",
                          help="auto: small 3x3 stride-1 stem for images of 64 px or less")
    parser.add_argument("--output-dir", default="uc_output/evaluate")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _n_values(args: argparse.Namespace, num_classes: int) -> list[int] | None:
    if args.n_step < 1:
        raise ValueError(f"--n-step must be >= 1; got {args.n_step}.")
    if args.n_range is None:
        return None if args.n_step == 1 else default_n_range(num_classes)[:: args.n_step]
    low, high = args.n_range
    if low > high:
        raise ValueError(f"--n-range LOW HIGH needs LOW <= HIGH; got {low} {high}.")
    for n in (low, high):
        validate_n(n, num_classes)
    return list(range(low, high + 1, args.n_step))


def _source_name(source: str) -> str:
    return Path(source.rstrip("/\\")).name or source


def run_evaluate(args: argparse.Namespace) -> dict:
    """Run the whole evaluation from parsed arguments and write the outputs (main process).

    Returns ``{"config": ..., "rows": [...], "outputs": {"results_json", "table", "plot"}}``.

    Example:
        >>> p = argparse.ArgumentParser(); add_evaluate_arguments(p)
        >>> args = p.parse_args(["--clean", "clean_dir", "--protected", "protected_dir", "--epochs", "5"])
        >>> results = run_evaluate(args)  # doctest: +SKIP
    """
    # Options are checked before any data is read; what depends on the data is filled in after.
    config = EvaluationConfig(
        victims=args.victims,
        defenses=args.defenses,
        protected_fractions=args.protected_fraction,
        mix_by=args.mix_by,
        seeds=args.seeds,
        include_original=not args.no_original,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        augment=args.augment,
        width=args.width,
        small_input=STEMS[args.stem],
        encoder=args.encoder,
        relabel_seed=args.relabel_seed,
        pseudo_n_values=args.pseudo_labels,
        pseudo_encoder=args.pseudo_encoder,
        simclr_epochs=args.simclr_epochs,
        simclr_batch_size=args.simclr_batch_size,
        dataset=args.dataset_name or _source_name(args.clean),
    )
    accelerator = Accelerator()
    data, metadata = load_evaluation_data(
        args.clean,
        args.protected,
        image_column=args.image_column,
        label_column=args.label_column,
        train_split=args.train_split,
        test_split=args.test_split,
        class_names=args.class_names,
        image_size=args.image_size,
        progress=not args.no_progress,
    )
    config.n_values = _n_values(args, len(data.class_names))
    if config.n_values == [] and not config.include_original and not config.pseudo_n_values:
        raise ValueError("Nothing to evaluate: no n values and --no-original.")
    for key in ("method", "surrogate"):
        cli_value = getattr(args, key)
        if key in metadata and cli_value is not None and cli_value != metadata[key]:
            logger.warning(
                "--%s %r differs from the protected dataset's %r; using the dataset's.", key, cli_value, metadata[key]
            )
        setattr(config, key, metadata.get(key) or cli_value or "unknown")
    logger.info(
        "Evaluating %s: %d train / %d test images at %d px, %d classes; method %s, surrogate %s",
        config.dataset, len(data.train_labels), len(data.test_labels), data.image_size,
        len(data.class_names), config.method, config.surrogate,
    )
    rows, relabelings = run_sweep(data, config, accelerator=accelerator, progress=not args.no_progress)
    results = {
        "config": {
            **asdict(config),
            "clean": args.clean,
            "protected": args.protected,
            "num_train": len(data.train_labels),
            "num_test": len(data.test_labels),
            "image_size": data.image_size,
            "num_classes": len(data.class_names),
            "class_names": data.class_names,
            "relabelings": relabelings,
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "rows": rows,
    }
    outputs: dict[str, str] = {}
    if accelerator.is_main_process:
        outputs = write_outputs(results, args.output_dir)
        logger.info("Wrote %s", ", ".join(outputs.values()))
    accelerator.wait_for_everyone()
    return {**results, "outputs": outputs}
