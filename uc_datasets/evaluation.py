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
import json
import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from PIL import Image
from tqdm.auto import tqdm

from .defenses import DEFENSES, get_defense
from .metrics import load_unlearnability
from .relabel import (
    DEFAULT_ENCODER,
    PAPER_N_RANGE,
    Relabeling,
    default_n_range,
    embed_class_names,
    get_class_names,
    identity_relabeling,
    kmeans_relabeling,
    validate_n,
)
from .victims import AUGMENTATIONS, VICTIMS, TrainConfig, build_victim, canonical_victim_name, predict, train_victim

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
    "write_outputs",
]

ROW_KEYS = (
    "dataset",
    "method",
    "surrogate",
    "victim",
    "width",
    "epochs",
    "n_classes",
    "relabel",
    "defense",
    "protected_fraction",
    "seed",
    "clean_acc",
    "protected_acc",
    "chance",
    "protection_score",
)
MIX_MODES = ("sample", "class")
STEMS = {"auto": None, "small": True, "imagenet": False}
RESULTS_JSON, RESULTS_TABLE, RESULTS_PLOT = "results.json", "results.md", "accuracy_vs_n.png"


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
    epochs: int = 90
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: str = "crop"
    width: float = 1.0
    small_input: bool | None = None
    encoder: str = DEFAULT_ENCODER
    relabel_seed: int = 0
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
        if self.n_values is not None and not self.n_values and not self.include_original:
            raise ValueError("Nothing to evaluate: no n values and the original labels are excluded.")
        TrainConfig(self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay, self.augment)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay, self.augment, seed)


# --- data ---------------------------------------------------------------------------------


@dataclass
class EvaluationData:
    """The sweep's tensors: uint8 images ``(N, 3, H, W)`` and int64 original labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    protected_images: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]

    def __post_init__(self) -> None:
        if self.protected_images.shape != self.train_images.shape:
            raise ValueError(
                f"Protected train images {tuple(self.protected_images.shape)} do not match the clean train images "
                f"{tuple(self.train_images.shape)}: the protected split must be the clean train split, row by row, "
                "at the same size (pass --image-size to resize both)."
            )
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(
                f"Test images {tuple(self.test_images.shape[1:])} and train images "
                f"{tuple(self.train_images.shape[1:])} differ in size; pass --image-size."
            )
        for name, labels in (("train", self.train_labels), ("test", self.test_labels)):
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.class_names)):
                raise ValueError(
                    f"{name} labels span [{int(labels.min())}, {int(labels.max())}] but there are "
                    f"{len(self.class_names)} class names; remove unlabelled rows (-1) or fix --class-names."
                )

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


def load_image_dataset(source: str | Dataset | DatasetDict) -> Dataset | DatasetDict:
    """``load_from_disk`` for a directory written by ``save_to_disk``, else ``load_dataset(id)``;
    a ``Dataset``/``DatasetDict`` object is returned as it is.

    Example:
        >>> load_image_dataset("/no/such/dir")  # doctest: +SKIP
        Traceback (most recent call last):
        FileNotFoundError: ...
    """
    if isinstance(source, (Dataset, DatasetDict)):
        return source
    source = str(source)
    if os.path.isdir(source):
        return load_from_disk(source)
    if source.startswith((".", "/", "~", "\\")) or source.count("/") > 1 or os.path.exists(source):
        raise FileNotFoundError(
            f"Dataset directory {source!r} does not exist; give a save_to_disk directory or a Hub id (owner/name)."
        )
    return load_dataset(source)


def _split(dataset: Dataset | DatasetDict, split: str, role: str) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    if split not in dataset:
        option = "--test-split" if role == "test" else "--train-split"
        raise ValueError(f"The {role} dataset has no split {split!r}; its splits are {list(dataset)}. Pass {option}.")
    return dataset[split]


def _to_rgb_array(image: Any) -> np.ndarray:
    """A decoded image (PIL or array) as a uint8 ``(H, W, 3)`` array; grey is repeated."""
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            array = np.clip(array / (257.0 if image.mode.startswith("I;16") else 1.0), 0, 255).astype(np.uint8)
            return np.repeat(array[..., None], 3, axis=-1)
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"Images must be 2-D (grey) or 3-D (H, W, C); got shape {array.shape}.")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        array = array[..., :3]
    if array.dtype != np.uint8:
        scale = 255.0 if array.dtype.kind == "f" and array.max() <= 1.0 else 1.0
        array = np.clip(np.round(array * scale), 0, 255).astype(np.uint8)
    return array


def _resize_center_crop(array: np.ndarray, size: int) -> np.ndarray:
    height, width = array.shape[:2]
    if (height, width) == (size, size):
        return array
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = np.asarray(Image.fromarray(array).resize((new_w, new_h), Image.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def dataset_to_tensors(
    dataset: Dataset,
    image_column: str = "image",
    label_column: str | None = "label",
    *,
    image_size: int | None = None,
    desc: str = "Loading images",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode a split into uint8 images ``(N, 3, H, W)`` and int64 labels (or None).

    Grey and palette images become 3-channel RGB. With ``image_size`` every image is resized
    (shorter side) and centre-cropped to a square; without it all images must share one size.

    Example:
        >>> ds = Dataset.from_dict({"image": [np.zeros((4, 4), np.uint8)], "label": [0]})
        >>> images, labels = dataset_to_tensors(ds)
        >>> tuple(images.shape), labels.tolist()
        ((1, 3, 4, 4), [0])
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the dataset is empty; check the split and the source.")
    if image_column not in dataset.column_names:
        raise ValueError(
            f"Image column {image_column!r} not found; the columns are {dataset.column_names}. Pass --image-column."
        )
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels; got {image_size}.")
    arrays: list[np.ndarray] = []
    sizes: set[tuple[int, int]] = set()
    batches = dataset.select_columns([image_column]).iter(batch_size=256)
    with tqdm(total=len(dataset), desc=desc, unit="img", leave=False, disable=not progress) as bar:
        for batch in batches:
            for image in batch[image_column]:
                array = _to_rgb_array(image)
                if image_size is not None:
                    array = _resize_center_crop(array, image_size)
                sizes.add(array.shape[:2])
                arrays.append(array)
            bar.update(len(batch[image_column]))
    if len(sizes) > 1:
        raise ValueError(
            f"{desc}: images have different sizes ({sorted(sizes)[:3]} ...); pass --image-size to resize them to one."
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = None
    if label_column is not None:
        if label_column not in dataset.column_names:
            raise ValueError(
                f"Label column {label_column!r} not found; the columns are {dataset.column_names}. Pass --label-column."
            )
        labels = torch.as_tensor(np.asarray(list(dataset[label_column]), dtype=np.int64))
    return images, labels


def read_protection_metadata(dataset: Dataset | DatasetDict) -> dict[str, str]:
    """``method`` and ``surrogate`` recorded in a protected dataset's ``info.description``.

    Reads a JSON description (keys ``method``/``surrogate``, at top level or one level down,
    e.g. ``{"uc_datasets": {"method": "UC-CLIP", "surrogate": "openai/clip-vit-base-patch32"}}``)
    or ``method: ...`` / ``surrogate: ...`` lines. Missing keys are left out.

    Example:
        >>> ds = Dataset.from_dict({"x": [1]})
        >>> ds.info.description = "method: UC\\nsurrogate: efficientnet-lite0"
        >>> read_protection_metadata(ds)
        {'method': 'UC', 'surrogate': 'efficientnet-lite0'}
    """
    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    description = dataset.info.description or ""
    found: dict[str, str] = {}
    try:
        data = json.loads(description)
    except ValueError:
        data = None
    if isinstance(data, dict):
        candidates = [data] + [v for v in data.values() if isinstance(v, dict)]
        for candidate in candidates:
            for key in ("method", "surrogate"):
                if key not in found and isinstance(candidate.get(key), (str, int, float)):
                    found[key] = str(candidate[key])
        return found
    for key in ("method", "surrogate"):
        match = re.search(rf"^\s*{key}\s*[:=]\s*(\S.*?)\s*$", description, flags=re.IGNORECASE | re.MULTILINE)
        if match:
            found[key] = match.group(1)
    return found


def read_run_summary(source: str | os.PathLike) -> dict[str, str]:
    """``method``/``surrogate`` from a ``run_summary.json`` beside a protected ``save_to_disk``
    directory (in it or in its parent, where ``uc-datasets protect`` writes one).

    Example:
        >>> read_run_summary("/no/such/dir")
        {}
    """
    if not os.path.isdir(source):
        return {}
    source = str(source)
    for folder in (Path(source), Path(source).resolve().parent):
        summary = folder / "run_summary.json"
        if summary.is_file():
            try:
                data = json.loads(summary.read_text())
            except ValueError:
                logger.warning("Could not parse %s; ignoring it.", summary)
                return {}
            return {key: str(data[key]) for key in ("method", "surrogate") if isinstance(data.get(key), str)}
    return {}


def load_evaluation_data(
    clean: str | DatasetDict,
    protected: str | Dataset | DatasetDict,
    *,
    image_column: str = "image",
    label_column: str = "label",
    train_split: str = "train",
    test_split: str = "test",
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
    progress: bool = True,
) -> tuple[EvaluationData, dict[str, str]]:
    """Load and check the clean/protected pair (paths, Hub ids or dataset objects); returns the
    tensors and the protection metadata (``method``/``surrogate`` from the protected dataset's
    description, else from a run_summary.json beside its directory).

    The protected source is a ``DatasetDict`` with ``train_split`` or a single ``Dataset``;
    it must be the clean train split, perturbed, row by row (same length, same labels).

    Example:
        >>> data, meta = load_evaluation_data("clean_dir", "protected_dir")  # doctest: +SKIP
    """
    clean_ds = load_image_dataset(clean)
    if isinstance(clean_ds, Dataset):
        raise ValueError(
            f"The clean dataset {clean!r} is a single Dataset; it needs a {train_split!r} and a {test_split!r} split "
            "(a DatasetDict, e.g. ds.train_test_split(...) saved with save_to_disk)."
        )
    clean_train = _split(clean_ds, train_split, "clean train")
    clean_test = _split(clean_ds, test_split, "test")
    protected_ds = load_image_dataset(protected)
    protected_train = _split(protected_ds, train_split, "protected")
    if len(protected_train) != len(clean_train):
        raise ValueError(
            f"The protected train split has {len(protected_train)} rows but the clean train split has "
            f"{len(clean_train)}; the protected split must be the clean train split, perturbed, row by row."
        )
    names = get_class_names(clean_train, label_column, class_names)
    train_images, train_labels = dataset_to_tensors(
        clean_train, image_column, label_column, image_size=image_size, desc="clean train", progress=progress
    )
    test_images, test_labels = dataset_to_tensors(
        clean_test, image_column, label_column, image_size=image_size, desc="clean test", progress=progress
    )
    has_labels = label_column in protected_train.column_names
    protected_images, protected_labels = dataset_to_tensors(
        protected_train, image_column, label_column if has_labels else None,
        image_size=image_size, desc="protected", progress=progress,
    )
    if protected_labels is not None and not torch.equal(protected_labels, train_labels):
        row = int((protected_labels != train_labels).nonzero()[0])
        raise ValueError(
            f"Protected and clean train labels differ first at row {row} ({int(protected_labels[row])} vs "
            f"{int(train_labels[row])}); the protected split must keep the clean split's order."
        )
    data = EvaluationData(train_images, train_labels, protected_images, test_images, test_labels, names)
    summary = read_run_summary(protected) if isinstance(protected, (str, os.PathLike)) else {}
    return data, {**summary, **read_protection_metadata(protected_train)}


def protected_mask(
    num_samples: int,
    fraction: float,
    seed: int,
    *,
    by: str = "sample",
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which training rows use the protected image: ``round(fraction * N)`` random rows, or
    with ``by="class"`` all rows of ``round(fraction * C)`` random original classes (the
    paper's Sec. 4.6 mixes whole classes).

    Example:
        >>> protected_mask(4, 0.5, seed=0).sum().item()
        2
        >>> mask = protected_mask(4, 0.5, seed=0, by="class", labels=torch.tensor([0, 0, 1, 1]))
        >>> mask.tolist() in ([True, True, False, False], [False, False, True, True])
        True
    """
    generator = torch.Generator().manual_seed(seed)
    if by == "sample":
        chosen = torch.randperm(num_samples, generator=generator)[: round(fraction * num_samples)]
        mask = torch.zeros(num_samples, dtype=torch.bool)
        mask[chosen] = True
        return mask
    if by == "class":
        if labels is None:
            raise ValueError("Mixing by class needs the original labels.")
        classes = torch.unique(labels)
        chosen = classes[torch.randperm(len(classes), generator=generator)[: round(fraction * len(classes))]]
        return torch.isin(labels, chosen)
    raise ValueError(f"by must be one of {MIX_MODES}; got {by!r}.")


# --- the sweep ----------------------------------------------------------------------------


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


def run_sweep(
    data: EvaluationData,
    config: EvaluationConfig,
    *,
    accelerator: Accelerator | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict[str, dict]]:
    """Train and test every (labelling, victim, defence, fraction, seed); return the rows and
    the relabelling used for each n (``{str(n): {"method", "mapping", "groups"}}``).

    The clean-trained victim does not depend on the protected fraction, so it is trained once
    per (labelling, victim, defence, seed); fraction 0 reuses it.

    Example:
        >>> rows, labelings = run_sweep(data, EvaluationConfig(epochs=1, n_values=[2]))  # doctest: +SKIP
    """
    accelerator = accelerator or Accelerator()
    metric = load_unlearnability()
    labelings = _labelings(data.class_names, config)
    fractions = list(dict.fromkeys(float(f) for f in config.protected_fractions))
    trainings_per_case = 1 + sum(1 for f in fractions if f > 0)
    total = len(config.seeds) * len(config.victims) * len(config.defenses) * len(labelings) * trainings_per_case
    masks = {
        (f, seed): protected_mask(len(data.train_labels), f, seed, by=config.mix_by, labels=data.train_labels)
        for f in fractions
        for seed in config.seeds
    }
    rows: list[dict] = []
    bar = tqdm(total=total, desc="evaluate", unit="run", disable=not (progress and accelerator.is_main_process))

    def train_and_test(victim_name: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                       spec: str, seed: int) -> torch.Tensor:
        victim = build_victim(
            victim_name, num_classes, width=config.width, image_size=data.image_size,
            small_input=config.small_input, seed=seed,
        )
        defense = get_defense(spec)
        victim = train_victim(
            victim, images, labels, config.train_config(seed),
            defense=defense, accelerator=accelerator, progress=progress,
        )
        predictions = predict(
            victim, data.test_images, batch_size=2 * config.batch_size, defense=defense, accelerator=accelerator
        )
        bar.update(1)
        return predictions

    for seed in config.seeds:
        for victim_name in config.victims:
            for spec in config.defenses:
                for labeling in labelings:
                    train_y = torch.from_numpy(labeling.map_labels(data.train_labels))
                    test_y = labeling.map_labels(data.test_labels).tolist()
                    bar.set_postfix_str(f"{victim_name} {spec} n={labeling.n_groups} seed={seed}")
                    clean_pred = train_and_test(
                        victim_name, data.train_images, train_y, labeling.n_groups, spec, seed
                    )
                    clean = metric.compute(predictions=clean_pred.tolist(), references=test_y)
                    for fraction in fractions:
                        if fraction == 0:
                            protected_pred = clean_pred
                        else:
                            mask = masks[(fraction, seed)][:, None, None, None]
                            images = torch.where(mask, data.protected_images, data.train_images)
                            protected_pred = train_and_test(
                                victim_name, images, train_y, labeling.n_groups, spec, seed
                            )
                        scores = metric.compute(
                            predictions=protected_pred.tolist(), references=test_y, clean_accuracy=clean["accuracy"]
                        )
                        row = {
                            "dataset": config.dataset,
                            "method": config.method,
                            "surrogate": config.surrogate,
                            "victim": victim_name,
                            "width": config.width,
                            "epochs": config.epochs,
                            "n_classes": labeling.n_groups,
                            "relabel": labeling.method,
                            "defense": spec,
                            "protected_fraction": fraction,
                            "seed": seed,
                            "clean_acc": clean["accuracy"],
                            "protected_acc": scores["accuracy"],
                            "chance": scores["chance"],
                            "protection_score": scores["protection_score"],
                        }
                        rows.append(row)
                        if accelerator.is_main_process:
                            logger.info(
                                "%s %s n=%d (%s) fraction=%.2f seed=%d: clean %.2f%%, protected %.2f%%, chance %.2f%%",
                                victim_name,
                                spec,
                                labeling.n_groups,
                                labeling.method,
                                fraction,
                                seed,
                                100 * row["clean_acc"],
                                100 * row["protected_acc"],
                                100 * row["chance"],
                            )
    bar.close()
    relabelings = {str(r.n_groups): r.to_dict() for r in labelings}
    return rows, relabelings


# --- reporting ----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def results_table(rows: Sequence[dict]) -> str:
    """A markdown table of the rows (accuracies in %), one line per row.

    Example:
        >>> row = dict.fromkeys(ROW_KEYS, 0); row.update(victim="resnet18", defense="none", relabel="original")
        >>> results_table([row]).splitlines()[0].startswith("| victim")
        True
    """
    header = (
        "| victim | defense | protected fraction | labels | n | seed | clean acc (%) | protected acc (%) "
        "| chance (%) | protection score |"
    )
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for row in rows:
        score = "n/a" if row["protection_score"] is None else f"{row['protection_score']:.3f}"
        lines.append(
            f"| {row['victim']} | {row['defense']} | {row['protected_fraction']:g} | {row['relabel']} "
            f"| {row['n_classes']} | {row['seed']} | {_pct(row['clean_acc'])} | {_pct(row['protected_acc'])} "
            f"| {_pct(row['chance'])} | {score} |"
        )
    return "\n".join(lines) + "\n"


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    array = np.asarray(list(values), dtype=np.float64)
    return float(array.mean()), float(array.std()) if len(array) > 1 else 0.0


def plot_accuracy_vs_n(rows: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Figure 4a: test accuracy (%) against the number of classes n, per (victim, defence,
    fraction) panel, for clean training, protected training and majority-class chance.

    BERT/K-means labellings are lines (mean over seeds, std as error bars); the original
    labelling is a separate marker at n = C. Written as PNG with matplotlib's Agg canvas.

    Example:
        >>> plot_accuracy_vs_n(rows, "accuracy_vs_n.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("No rows to plot.")
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        panels[(row["victim"], row["defense"], row["protected_fraction"])].append(row)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    figure = Figure(figsize=(5.5 * ncols, 4.2 * nrows), constrained_layout=True)
    FigureCanvasAgg(figure)
    series = (("clean_acc", "clean training", "tab:blue"), ("protected_acc", "protected training", "tab:red"),
              ("chance", "chance (majority class)", "black"))
    for index, ((victim, defense, fraction), panel_rows) in enumerate(panels.items()):
        axes = figure.add_subplot(nrows, ncols, index + 1)
        has_kmeans = any(row["relabel"] == "bert-kmeans" for row in panel_rows)
        for relabel in ("bert-kmeans", "original"):
            by_n: dict[int, list[dict]] = defaultdict(list)
            for row in panel_rows:
                if row["relabel"] == relabel:
                    by_n[row["n_classes"]].append(row)
            ns = sorted(by_n)
            for key, label, color in series:
                if not ns:
                    continue
                stats = [_mean_std(100 * r[key] for r in by_n[n]) for n in ns]
                style = (
                    dict(marker="o", markersize=4, linestyle="-", label=label)
                    if relabel == "bert-kmeans"
                    else dict(marker="D", markersize=7, linestyle="none", markerfacecolor="none",
                              label=None if has_kmeans else label)
                )
                axes.errorbar(ns, [m for m, _ in stats], yerr=[s for _, s in stats], color=color, capsize=2, **style)
        if any(row["relabel"] == "original" for row in panel_rows):
            axes.plot([], [], marker="D", markerfacecolor="none", linestyle="none", color="gray",
                      label="original labels (n = C)")
        axes.set_xlabel("number of classes n (BERT + K-means relabelling)")
        axes.set_ylabel("clean test accuracy (%)")
        axes.set_ylim(0, 100)
        axes.set_title(f"{victim} | defence: {defense} | protected: {100 * fraction:g}%", fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
    if title:
        figure.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120)
    return path


def write_outputs(results: dict, output_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``results.json``, ``results.md`` and ``accuracy_vs_n.png``; return their paths.

    Example:
        >>> paths = write_outputs({"config": {}, "rows": rows}, "out")  # doctest: +SKIP
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows, config = results["rows"], results["config"]
    json_path = output_dir / RESULTS_JSON
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    heading = (
        f"# Unlearnability: {config.get('dataset', '')}, {config.get('method', '')} "
        f"(surrogate {config.get('surrogate', '')})\n\n"
        f"Victims trained for {config.get('epochs')} epochs at width {config.get('width')}; test accuracy on the "
        "clean test split, relabelled like the training labels. Chance is the majority-class rate; "
        "protection score = (protected - chance) / (clean - chance): 0 = nothing learned, 1 = no protection.\n\n"
    )
    table_path = output_dir / RESULTS_TABLE
    table_path.write_text(heading + results_table(rows))
    title = f"{config.get('dataset', '')}: {config.get('method', '')} ({config.get('surrogate', '')})"
    plot_path = plot_accuracy_vs_n(rows, output_dir / RESULTS_PLOT, title=title)
    return {"results_json": str(json_path), "table": str(table_path), "plot": str(plot_path)}


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
    if config.n_values == [] and not config.include_original:
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
