"""Evaluation data: load the clean and protected splits and turn them into uint8 tensors.

Reads local ``save_to_disk`` folders or Hub ids, checks that the protected split is the
clean train split row by row, converts every image mode to RGB at one size, and picks the
rows that a partially protected train set takes from the protected split.

Example:
    >>> from uc_datasets.evaluation.data import dataset_to_tensors
    >>> images, labels = dataset_to_tensors(ds, image_size=32)  # doctest: +SKIP
    >>> images.dtype, images.shape[1:]  # doctest: +SKIP
    (torch.uint8, torch.Size([3, 32, 32]))
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from PIL import Image
from tqdm.auto import tqdm

from uc_datasets.core.imaging import rgb_array
from uc_datasets.core.sources import load_source
from uc_datasets.evaluation.relabel import get_class_names

logger = logging.getLogger(__name__)

__all__ = [
    "MIX_MODES",
    "EvaluationData",
    "dataset_to_tensors",
    "load_evaluation_data",
    "check_row_order",
    "protected_mask",
    "read_protection_metadata",
    "recorded_epsilon",
    "read_run_summary",
]

MIX_MODES = ("sample", "class")


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


def _split(dataset: Dataset | DatasetDict, split: str, role: str) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    if split not in dataset:
        option = "--test-split" if role == "test" else "--train-split"
        raise ValueError(f"The {role} dataset has no split {split!r}; its splits are {list(dataset)}. Pass {option}.")
    return dataset[split]


def _to_rgb_array(image: Any) -> np.ndarray:
    """An image value (decoded PIL, stored bytes, or an array) as a uint8 ``(H, W, 3)`` array; grey is repeated."""
    if isinstance(image, (Image.Image, dict, bytes, str)):
        return rgb_array(image)
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


def _description(dataset: Dataset | DatasetDict) -> str:
    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    return dataset.info.description or ""


def _description_records(dataset: Dataset | DatasetDict) -> list[dict] | None:
    """The JSON objects of a dataset's ``info.description`` (the top level and one level down), or
    None when the description is not a JSON object."""
    try:
        data = json.loads(_description(dataset))
    except ValueError:
        return None
    return [data] + [v for v in data.values() if isinstance(v, dict)] if isinstance(data, dict) else None


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
    found: dict[str, str] = {}
    records = _description_records(dataset)
    if records is not None:
        for candidate in records:
            for key in ("method", "surrogate"):
                if key not in found and isinstance(candidate.get(key), (str, int, float)):
                    found[key] = str(candidate[key])
        return found
    for key in ("method", "surrogate"):
        match = re.search(rf"^\s*{key}\s*[:=]\s*(\S.*?)\s*$", _description(dataset),
                          flags=re.IGNORECASE | re.MULTILINE)
        if match:
            found[key] = match.group(1)
    return found


def recorded_epsilon(dataset: Dataset | DatasetDict) -> float | None:
    """The L-inf bound (pixel units) recorded in a protected dataset's description, or None.

    ``uc-datasets protect`` records it (:func:`uc_datasets.core.record.protection_record`).

    Example:
        >>> ds = Dataset.from_dict({"x": [1]})
        >>> ds.info.description = json.dumps({"uc_datasets": {"method": "UC", "epsilon": 8 / 255}})
        >>> round(recorded_epsilon(ds) * 255)
        8
    """
    for candidate in _description_records(dataset) or []:
        value = candidate.get("epsilon")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
            return float(value)
    return None


#: How many rows :func:`check_row_order` compares (a seeded sample of a larger set).
ORDER_CHECK_ROWS = 2048
#: The bound, in uint8 levels, that :func:`check_row_order` assumes when the protected set records
#: no epsilon: four times the paper's 16/255, twice the largest bound in common use (32/255).
UNRECORDED_BOUND_LEVELS = 64


def check_row_order(clean: torch.Tensor, protected: torch.Tensor, *, epsilon: float | None = None,
                    tolerance: int = 0, max_rows: int = ORDER_CHECK_ROWS, seed: int = 0) -> dict[str, int]:
    """Check by content that ``protected`` is ``clean`` row by row: each protected image within the bound.

    ``clean`` and ``protected`` are uint8 ``(N, 3, H, W)``. The bound is ``epsilon`` in levels
    (:data:`UNRECORDED_BOUND_LEVELS` when None) plus ``tolerance`` (1 for resized images);
    at most ``max_rows`` seeded rows are compared. A protected set in another order pairs its
    images with the wrong clean labels, so it is refused (``ValueError``); one in which no
    checked image differs is the clean set itself, which is warned about. Returns
    ``{"checked", "changed", "bound"}``.

    Example:
        >>> clean = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
        >>> check_row_order(clean, clean + 8, epsilon=8 / 255)
        {'checked': 4, 'changed': 4, 'bound': 8}
    """
    n = len(clean)
    recorded = epsilon is not None
    bound = (math.ceil(epsilon * 255 - 1e-9) if recorded else UNRECORDED_BOUND_LEVELS) + tolerance
    rows = torch.arange(n) if n <= max_rows else \
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_rows].sort().values
    deviation = torch.cat([(protected[chunk].to(torch.int16) - clean[chunk].to(torch.int16)).abs().amax(dim=(1, 2, 3))
                           for chunk in rows.split(256)]) if n else torch.zeros(0, dtype=torch.int16)
    off = (deviation > bound).nonzero().flatten()
    if len(off):
        row = int(rows[off[0]])
        where = "the protection's recorded bound" if recorded else "any usual protection bound (none is recorded)"
        raise ValueError(
            f"Protected train row {row} differs from clean train row {row} by {int(deviation[off[0]])} levels, more "
            f"than {where} of {bound}; {len(off)} of the {len(rows)} rows checked do. The protected split is not "
            "the clean train split in its order (shuffled, sorted or filtered?), so its images would be paired "
            "with the wrong clean labels. Pass the protected copy of the train split with its rows in the clean "
            "split's order.")
    changed = int((deviation > 0).sum())
    if len(rows) and not changed:
        logger.warning(
            "No protected image differs from its clean image (%d rows checked): --protected looks like the clean "
            "set itself, so the victims will learn it as well as the clean set (protection score about 1). Pass "
            "the protected copy.", len(rows))
    return {"checked": len(rows), "changed": changed, "bound": bound}


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
    hub_options: dict[str, Any] | None = None,
) -> tuple[EvaluationData, dict[str, str]]:
    """Load and check the clean/protected pair (paths, Hub ids or dataset objects); returns the
    tensors and the protection metadata (``method``/``surrogate`` from the protected dataset's
    description, else from a run_summary.json beside its directory).

    The protected source is a ``DatasetDict`` with ``train_split`` or a single ``Dataset``;
    it must be the clean train split, perturbed, row by row: same length, same labels, and each
    protected image within the bound of its clean image (:func:`check_row_order`, on a sample
    of a large set). ``hub_options`` are the ``load_source`` keywords of a Hub clean source
    (``name``, ``revision``, ``data_dir``, ``data_files``, ``token``); the token also reads a
    Hub protected source.

    Example:
        >>> data, meta = load_evaluation_data("clean_dir", "protected_dir")  # doctest: +SKIP
        >>> data, meta = load_evaluation_data("me/pets", "out/protected", hub_options={"name": "cats"})  # doctest: +SKIP
    """
    hub_options = dict(hub_options or {})
    clean_ds = load_source(clean, split=None, **hub_options)
    if isinstance(clean_ds, Dataset):
        raise ValueError(
            f"The clean dataset {clean!r} is a single Dataset; it needs a {train_split!r} and a {test_split!r} split "
            "(a DatasetDict, e.g. ds.train_test_split(...) saved with save_to_disk)."
        )
    clean_train = _split(clean_ds, train_split, "clean train")
    clean_test = _split(clean_ds, test_split, "test")
    protected_ds = load_source(protected, split=None, token=hub_options.get("token"))
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
    check_row_order(train_images, protected_images, epsilon=recorded_epsilon(protected_train),
                    tolerance=0 if image_size is None else 1)
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
