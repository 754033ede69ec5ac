"""Where the baselines' labels come from: a surrogate classifier (label-agnostic) or the dataset.

The label-dependent baselines (EMinN, EMaxN, AdvPoison, SynPer) need one class per image.

* **Label-agnostic** (the default, the paper's setup, its Table 1): the class a frozen
  pretrained *classifier* predicts, e.g. the ImageNet class of ``"efficientnet-lite0"``. A
  transformers checkpoint works when it was saved with a trained classification head (its
  ``config.architectures`` names a ``*ForImageClassification`` class). Encoders without a
  head (CLIP, DINOv2, a bare ``ViTModel``) have no classes to predict and are refused with a
  message; a randomly initialised head would give meaningless labels.
* **Label-consistent**: the dataset's own label column, as in the "same labels" column of
  the paper's Figure 2a.

Example:
    >>> clf = load_classifier("efficientnet-lite0", image_size=64)  # doctest: +SKIP
    >>> clf(torch.rand(2, 3, 28, 28)).shape  # ImageNet logits  # doctest: +SKIP
    torch.Size([2, 1000])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from uc_datasets.core.surrogates import (
    EFFICIENTNET_LITE0,
    PreprocessConfig,
    Surrogate,
    TorchPreprocess,
    _forward_kwargs,
    _load_efficientnet_lite0,
    _quiet_transformers,
)

logger = logging.getLogger(__name__)

__all__ = ["LabelSourceError", "dataset_labels", "load_classifier", "predict_classes"]


class LabelSourceError(ValueError):
    """The requested label source cannot give a class to every image."""


def _refuse_headless(name: str, archs: Sequence[str]) -> LabelSourceError:
    return LabelSourceError(
        f"label-agnostic mode labels each image with the class the surrogate predicts, but {name!r} has no "
        f"image-classification head (its config.architectures is {list(archs) or None}). Use "
        f"surrogate='{EFFICIENTNET_LITE0}' (offline ImageNet classifier), a checkpoint saved as a "
        "*ForImageClassification model, or label-consistent mode with the dataset's labels "
        "(label_column='label')."
    )


def load_classifier(name: str, *, image_size: int | None = None, local_files_only: bool | None = None) -> Surrogate:
    """Load a frozen image classifier: pixels in ``[0, 1]`` ``(B, 3, H, W)`` -> logits ``(B, C)``.

    Args:
        name: ``"efficientnet-lite0"`` (ImageNet, 1000 classes, works offline) or a transformers
            image-classification checkpoint (Hub id or directory) with a trained head.
        image_size: optional square input size overriding the processor's (fast CPU runs).
        local_files_only: forwarded to ``from_pretrained``; defaults to ``HF_HUB_OFFLINE``.

    Returns:
        A :class:`~uc_datasets.core.surrogates.Surrogate` whose output is the class logits, with
        the same differentiable preprocessing and weight digest as the UC surrogates.

    Raises:
        LabelSourceError: the model has no classification head.

    Example:
        >>> clf = load_classifier("efficientnet-lite0", image_size=64)  # doctest: +SKIP
        >>> clf(torch.rand(2, 3, 28, 28)).argmax(1)  # ImageNet class indices  # doctest: +SKIP
    """
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if name == EFFICIENTNET_LITE0:
        model, cfg, _ = _load_efficientnet_lite0()
        fwd, kind = (lambda m, x: m(x)), "imagenet-cnn"
    else:
        import transformers
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForImageClassification,
        )

        kw = {"local_files_only": local_files_only}
        try:
            config = AutoConfig.from_pretrained(name, **kw)
        except OSError as err:
            raise OSError(f"Could not load the surrogate classifier {name!r}: {err}") from err
        archs = list(getattr(config, "architectures", None) or [])
        if not any(a.endswith("ForImageClassification") for a in archs):
            raise _refuse_headless(name, archs)
        with _quiet_transformers():
            model = AutoModelForImageClassification.from_pretrained(name, **kw)
        backend = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}
        try:
            cfg = PreprocessConfig.from_image_processor(AutoImageProcessor.from_pretrained(name, **backend, **kw))
        except (OSError, ValueError) as err:
            size = int(getattr(config, "image_size", 224) or 224)
            logger.warning("No image processor found for %s (%s); using resize+crop to %d with ImageNet "
                           "mean/std.", name, err, size)
            cfg = PreprocessConfig(("shortest_edge", size), (size, size))
        extra = _forward_kwargs(model, image_size is not None)
        fwd, kind = (lambda m, x: m(pixel_values=x, **extra).logits), f"{config.model_type}-classifier"
    if image_size is not None:
        if image_size < 8:
            raise ValueError(f"image_size={image_size} is too small for a surrogate; use 32 or more.")
        cfg = cfg.with_image_size(int(image_size))
    return Surrogate(model, TorchPreprocess(cfg), fwd, name, kind)


@torch.no_grad()
def predict_classes(classifier: Surrogate, images: torch.Tensor, *, batch_size: int = 64,
                    restrict_to: Sequence[int] | None = None, progress: bool = False) -> np.ndarray:
    """Predicted class index ``(N,)`` of uint8 images ``(N, 3, H, W)``, in batches.

    ``restrict_to`` limits the argmax to those class indices (returned as positions in it).

    Example:
        >>> predict_classes(clf, torch.zeros(4, 3, 32, 32, dtype=torch.uint8))  # doctest: +SKIP
        array([...])
    """
    from tqdm.auto import tqdm

    device = next(classifier.parameters()).device
    idx = None if restrict_to is None else torch.as_tensor(list(restrict_to), dtype=torch.long, device=device)
    out = []
    for s in tqdm(range(0, len(images), batch_size), desc="surrogate labels", disable=not progress):
        logits = classifier(images[s : s + batch_size].to(device).float().div_(255))
        if idx is not None:
            logits = logits[:, idx]
        out.append(logits.argmax(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


if TYPE_CHECKING:  # read only when a fit reads labels: loading a protector does not import datasets
    import datasets


def dataset_labels(ds: datasets.Dataset, label_column: str) -> tuple[list, list, dict]:
    """The dataset's labels: ``(values per row, sorted distinct classes, info)``.

    Values must be all integers or all strings (a ``ClassLabel`` column gives integers;
    its names go into ``info``). Missing values are refused.

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({"label": [2, 0, 2]})
        >>> dataset_labels(ds, "label")[:2]
        ([2, 0, 2], [0, 2])
    """
    if label_column not in ds.column_names:
        raise KeyError(f"label column {label_column!r} not found; the dataset has columns {ds.column_names}. "
                       "Pass label_column=... naming the label column, or label_column=None for label-agnostic mode.")
    import datasets

    values = list(ds[label_column])
    bad = [i for i, v in enumerate(values) if v is None or isinstance(v, bool) or not isinstance(v, (int, str))]
    if bad:
        raise LabelSourceError(
            f"label column {label_column!r} must hold one integer or string per row; row {bad[0]} holds "
            f"{values[bad[0]]!r} ({len(bad)} bad row(s)). Fill or drop those rows first."
        )
    if len({type(v) for v in values}) > 1:
        raise LabelSourceError(f"label column {label_column!r} mixes integers and strings; use one type.")
    values = [int(v) if isinstance(v, (int, np.integer)) else v for v in values]
    classes = sorted(set(values))
    feat = ds.features[label_column]
    info = {"label_column": label_column}
    if isinstance(feat, datasets.ClassLabel):
        out_of_range = [i for i, v in enumerate(values) if not 0 <= v < feat.num_classes]
        if out_of_range:
            i = out_of_range[0]
            raise LabelSourceError(
                f"label column {label_column!r} is a ClassLabel of {feat.num_classes} names, but row {i} holds "
                f"{values[i]} ({len(out_of_range)} row(s) out of range; -1 is how datasets marks a missing label). "
                f"Drop those rows first: ds = ds.filter(lambda y: 0 <= y < {feat.num_classes}, "
                f"input_columns={label_column!r}), or fit label-free (label_column=None).")
        info["class_names"] = {int(c): feat.int2str(int(c)) for c in classes}
    return values, classes, info
