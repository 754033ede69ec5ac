"""Label-agnostic evaluation sweep: relabel -> train victims -> test on the clean test split.

For every labelling (the original labels, then the paper's BERT + K-means relabelling into n
groups for each n in the range), every victim, defence and seed, a victim is trained on the
clean train split and on the protected one (optionally only a fraction of it protected), and
both are tested on the clean test split relabelled the same way. Each (labelling, victim,
defence, fraction, seed) gives one row; see :data:`ROW_KEYS`.

Outputs (:func:`write_outputs`): ``results.json`` (``{"config": ..., "rows": [...]}``),
``results.md`` (a markdown table) and ``accuracy_vs_n.png`` (the paper's Figure 4a).
Accuracies are fractions in [0, 1]; the table and the plot show percentages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from uc_datasets.core.class_names import DEFAULT_ENCODER, embed_class_names
from uc_datasets.core.models import build_victim, canonical_victim_name
from uc_datasets.evaluation.data import (
    MIX_MODES,
    EvaluationData,
    dataset_to_tensors,
    load_evaluation_data,
    protected_mask,
    read_protection_metadata,
    read_run_summary,
)
from uc_datasets.evaluation.defenses import get_defense
from uc_datasets.evaluation.metrics import load_unlearnability
from uc_datasets.evaluation.relabel import (
    Relabeling,
    default_n_range,
    identity_relabeling,
    kmeans_relabeling,
    pseudo_labels_for,
    validate_n,
)
from uc_datasets.evaluation.reporting import (
    ROW_KEYS,
    plot_accuracy_vs_n,
    result_row,
    results_table,
    write_outputs,
)
from uc_datasets.evaluation.victims import TrainConfig, predict_during_training

logger = logging.getLogger(__name__)

__all__ = [
    "ROW_KEYS",
    "EvaluationConfig",
    "EvaluationData",
    "dataset_to_tensors",
    "load_evaluation_data",
    "plot_accuracy_vs_n",
    "protected_mask",
    "read_protection_metadata",
    "read_run_summary",
    "results_table",
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
    # step-resolved peak: evaluate evals_per_epoch times an epoch in the first early_epochs epochs
    # (a hacker with a clean validation set can stop at any step); 1 / 0: at the end of every epoch only
    evals_per_epoch: int = 1
    early_epochs: int = 0
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
        if self.evals_per_epoch < 1 or self.early_epochs < 0:
            raise ValueError(f"evals_per_epoch must be >= 1 and early_epochs >= 0; got {self.evals_per_epoch} and "
                             f"{self.early_epochs}.")
        self.train_config(0)  # validates the training fields

    def train_config(self, seed: int) -> TrainConfig:
        """The victims' :class:`~uc_datasets.evaluation.victims.TrainConfig` for one seed."""
        return TrainConfig(**{name: getattr(self, name) for name in _TRAIN_FIELDS}, seed=seed)


def _labelings(class_names: list[str], config: EvaluationConfig) -> list[Relabeling]:
    labelings = [identity_relabeling(class_names)] if config.include_original else []
    n_values = default_n_range(len(class_names)) if config.n_values is None else list(config.n_values)
    for n in n_values:
        validate_n(n, len(class_names))
    if n_values:
        embeddings = embed_class_names(class_names, config.encoder)
        for n in n_values:
            labelings.append(kmeans_relabeling(class_names, n, embeddings=embeddings, encoder=config.encoder,
                                               seed=config.relabel_seed))
    return labelings


def check_pseudo_labels(config: EvaluationConfig, n_train: int) -> None:
    """Refuse pseudo-label group counts above the number of training images (K-means cannot make them).

    Example:
        >>> check_pseudo_labels(EvaluationConfig(pseudo_n_values=[5]), 40)
    """
    too_many = [int(n) for n in config.pseudo_n_values if int(n) > n_train]
    if too_many:
        raise ValueError(f"--pseudo-labels {' '.join(map(str, too_many))}: K-means cannot make more groups than the "
                         f"{n_train} training images; choose values of at most {n_train}.")


def score_epochs(per_epoch: list[torch.Tensor], references: list[int], clean: dict | None = None,
                 metric=None, *, steps: list[int] | None = None, steps_per_epoch: int | None = None) -> dict:
    """Final and best scores of one victim from its test predictions at each evaluation point.

    ``per_epoch`` holds the predictions after every epoch, or, with ``steps`` (the 1-based
    optimiser step of each point, :func:`~uc_datasets.evaluation.victims.evaluation_steps`) and
    ``steps_per_epoch``, at every point of a step-resolved curve, the last one being the final
    model's. Returns the metric's ``accuracy``, ``chance`` and ``protection_score`` for the final
    point, plus ``accuracy_best`` / ``protection_score_best`` for the point with the highest test
    accuracy: the attacker's best case, early stopping with an oracle, at any evaluated step.
    ``best_epoch`` (1-based) is the epoch that point falls in, ``best_step`` its step.
    ``*_best_epoch_end`` are the same over the ends of epochs only (what a per-epoch evaluation
    sees). With ``clean`` (the clean victim's scores) the protection scores are relative to it:
    final to final, best to best, epoch-end best to epoch-end best.

    Example:
        >>> per_epoch = [torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([1, 1])]
        >>> s = score_epochs(per_epoch, [0, 1])
        >>> s["accuracy"], s["accuracy_best"], s["best_epoch"]
        (0.5, 1.0, 2)
        >>> s = score_epochs(per_epoch, [0, 1], steps=[1, 2, 4], steps_per_epoch=2)  # one mid-epoch point
        >>> s["best_step"], s["best_epoch"], s["accuracy_per_epoch"], s["accuracy_best_epoch_end"]
        (2, 1, [1.0, 0.5], 1.0)
    """
    if not per_epoch:
        raise ValueError("score_epochs needs the predictions of at least one epoch.")
    if steps is not None and (len(steps) != len(per_epoch) or not steps_per_epoch):
        raise ValueError(f"{len(steps)} steps for {len(per_epoch)} evaluation points: give one step per point, and "
                         "steps_per_epoch.")
    metric = metric or load_unlearnability()
    refs = torch.as_tensor(references)
    accuracies = [float((p == refs).float().mean()) for p in per_epoch]
    points, spe = (list(steps), int(steps_per_epoch)) if steps is not None else (
        list(range(1, len(per_epoch) + 1)), 1)
    ends = [i for i, st in enumerate(points) if st % spe == 0] or [len(points) - 1]
    best = max(range(len(accuracies)), key=accuracies.__getitem__)
    best_end = max(ends, key=accuracies.__getitem__)

    def scored(i: int, reference: float | None) -> dict:
        return metric.compute(predictions=per_epoch[i].tolist(), references=list(references), clean_accuracy=reference)

    final = scored(len(per_epoch) - 1, None if clean is None else clean["accuracy"])
    best_scores = scored(best, None if clean is None else clean["accuracy_best"])
    end_scores = scored(best_end, None if clean is None else clean.get("accuracy_best_epoch_end",
                                                                       clean["accuracy_best"]))
    out = {**final, "accuracy_best": best_scores["accuracy"], "protection_score_best": best_scores["protection_score"],
           "best_epoch": -(-points[best] // spe), "accuracy_per_epoch": [round(accuracies[i], 4) for i in ends],
           "accuracy_best_epoch_end": end_scores["accuracy"],
           "protection_score_best_epoch_end": end_scores["protection_score"]}
    if steps is not None:
        out.update(best_step=points[best], steps_per_epoch=spe, eval_steps=points,
                   accuracy_per_step=[round(a, 4) for a in accuracies])
    return out


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
    evals_per_epoch: int = 1,
    early_epochs: int = 0,
) -> dict:
    """Build a victim from scratch, train it on ``images`` / ``labels`` and score it on the test
    split after every epoch, and ``evals_per_epoch`` times an epoch in the first ``early_epochs``
    epochs (:func:`score_epochs`: the best point of that step-resolved curve). The one victim
    routine of the evaluation side; the sweep and the strength benchmark both call it.

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
        >>> s = train_and_score("resnet18", x, y, 2, x, y.tolist(), TrainConfig(epochs=2, batch_size=4),
        ...                     width=0.125, progress=False)
        >>> s["accuracy_best"] >= s["accuracy"]
        True
    """
    victim = build_victim(victim_name, num_classes, width=width, image_size=int(images.shape[-1]),
                          small_input=small_input, seed=train_config.seed)
    points = predict_during_training(victim, images, labels, train_config, test_images, per_epoch=evals_per_epoch,
                                     early_epochs=early_epochs, defense=get_defense(defense),
                                     accelerator=accelerator, progress=progress, batch_size=batch_size)
    steps = [st for st, _ in points]
    if evals_per_epoch == 1 or not early_epochs:  # one point an epoch: the per-epoch scores
        return score_epochs([p for _, p in points], test_labels, clean, metric)
    return score_epochs([p for _, p in points], test_labels, clean, metric, steps=steps,
                        steps_per_epoch=steps[-1] // train_config.epochs)


def _unprotected(clean: dict) -> dict:
    """Fraction 0: the protected victim is the clean one (score 1, or undefined at chance)."""
    return {**clean, "protection_score": 1.0 if clean["accuracy"] > clean["chance"] else None,
            "protection_score_best": 1.0 if clean["accuracy_best"] > clean["chance"] else None}


def _row(config: EvaluationConfig, *, victim: str, n: int, relabel: str, defense: str, fraction: float, seed: int,
         clean: dict, scores: dict) -> dict:
    return result_row(dataset=config.dataset, method=config.method, surrogate=config.surrogate, victim=victim,
                      width=config.width, epochs=config.epochs, n_classes=n, relabel=relabel, defense=defense,
                      protected_fraction=fraction, seed=seed, clean=clean, scores=scores)


def simclr_rows(data: EvaluationData, config: EvaluationConfig, victim_name: str, seed: int,
                protected_images: Callable[[float, int], torch.Tensor], *, accelerator: Accelerator | None = None,
                progress: bool = True, metric=None) -> list[dict]:
    """The unsupervised attacker for one backbone and seed, one row per protected fraction.

    SimCLR (:mod:`uc_datasets.evaluation.simclr`) is trained on the clean training images and, for each
    fraction, on the (partly) protected ones; a linear probe on the frozen features, fit on
    the *clean* labelled training images with the original labels, is scored on the clean
    test split. ``clean_acc`` / ``protected_acc`` are the two probes' accuracies
    (``victim = "simclr-<backbone>"``, ``relabel = "original"``); a probe has no epochs, so
    the best-epoch keys are None.
    """
    from uc_datasets.evaluation.simclr import SimCLRConfig, simclr_probe

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
    rows: list[dict] | None = None,
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

    Pseudo-label settings are checked, and the clean training set's pseudo-labels computed,
    before any victim trains. Rows are appended to ``rows`` (a new list by default) as they are
    finished, so a caller that passes its own list keeps them when a later run fails.

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
    rows = [] if rows is None else rows
    pseudo_info: dict[str, dict] = {}
    bar = tqdm(total=total, desc="evaluate", unit="run", disable=not (progress and accelerator.is_main_process))

    def score(victim_name: str, images: torch.Tensor, labels: torch.Tensor, n: int, test_y: list[int], spec: str,
              seed: int, clean: dict | None = None) -> dict:
        result = train_and_score(
            victim_name, images, labels, n, data.test_images, test_y, config.train_config(seed), defense=spec,
            width=config.width, small_input=config.small_input, clean=clean, accelerator=accelerator,
            progress=progress, batch_size=2 * config.batch_size, metric=metric,
            evals_per_epoch=config.evals_per_epoch, early_epochs=config.early_epochs,
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

    pseudo_cache: dict[tuple, tuple[torch.Tensor, list[int], str]] = {}
    image_size = None if config.pseudo_encoder == "pixels-pca" else data.image_size

    def pseudo_labels(n: int, key: str, images: torch.Tensor) -> tuple[torch.Tensor, list[int], str]:
        """Pseudo-labels of one training set (``key``), computed once however many victims use them."""
        if (n, key) not in pseudo_cache:
            lab, train_y, test_y = pseudo_labels_for(images, data.test_images, n, encoder=config.pseudo_encoder,
                                                     seed=config.relabel_seed, image_size=image_size)
            pseudo_info[f"pseudo-{n}-{key}"] = lab.to_dict()
            pseudo_cache[(n, key)] = train_y, test_y, lab.method
        return pseudo_cache[(n, key)]

    def class_labels(labeling: Relabeling) -> Callable[[str, torch.Tensor], tuple[torch.Tensor, list[int], str]]:
        train_y = torch.from_numpy(labeling.map_labels(data.train_labels))
        test_y = labeling.map_labels(data.test_labels).tolist()
        return lambda key, images: (train_y, test_y, labeling.method)

    check_pseudo_labels(config, len(data.train_labels))
    for n in config.pseudo_n_values:  # the clean set's pseudo-labels first: a bad encoder fails before training
        try:
            pseudo_labels(n, "clean", data.train_images)
        except (ValueError, RuntimeError) as err:
            raise ValueError(
                f"the pseudo-label encoder {config.pseudo_encoder!r} (--pseudo-encoder) failed on the training "
                f"images ({data.image_size} px): {err}. Use --pseudo-encoder pixels-pca, or larger images "
                "(--image-size)."
            ) from err
    # Every labelling as (n, labels_for(key, images) -> (train labels, test labels, name)): the
    # class-name ones ignore the images; pseudo-labels cluster the set each victim trains on.
    labels_for = [(lab.n_groups, class_labels(lab)) for lab in labelings]
    labels_for += [(n, lambda key, images, n=n: pseudo_labels(n, key, images)) for n in config.pseudo_n_values]
    for seed in config.seeds:
        for victim_name in config.victims:
            for spec in config.defenses:
                for n, labels in labels_for:
                    bar.set_postfix_str(f"{victim_name} {spec} n={n} seed={seed}")
                    train_y, test_y, relabel = labels("clean", data.train_images)
                    clean = score(victim_name, data.train_images, train_y, n, test_y, spec, seed)
                    for fraction in fractions:
                        if fraction == 0:
                            scores = _unprotected(clean)
                        else:
                            images = protected_images(fraction, seed)
                            p_train_y, p_test_y, _ = labels(f"protected-{fraction:g}-seed{seed}", images)
                            scores = score(victim_name, images, p_train_y, n, p_test_y, spec, seed, clean)
                        rows.append(_row(config, victim=victim_name, n=n, relabel=relabel, defense=spec,
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
