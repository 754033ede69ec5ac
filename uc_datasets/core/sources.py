"""Where datasets come from: the Hub, ``save_to_disk`` directories, image folders, and the
offline Fashion-MNIST that Debian packages (``apt-get install dataset-fashion-mnist``)."""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
from pathlib import Path

import datasets
import numpy as np

logger = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "train", *, root: str | os.PathLike = FASHION_MNIST_DIR,
                       max_samples: int | None = None) -> datasets.Dataset:
    """Fashion-MNIST as a Dataset with ``image`` (28x28 L, PNG) and ``label`` (ClassLabel).

    Example:
        >>> ds = load_fashion_mnist("test", max_samples=100)  # doctest: +SKIP
        >>> ds.features["label"].names[0]  # doctest: +SKIP
        'T-shirt/top'
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    img_file, lbl_file = (root / f for f in _FILES[split])
    if not img_file.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {root}. Install it with: apt-get install -y dataset-fashion-mnist "
            "(or pass root=... pointing at the IDX .gz files)."
        )
    images, labels = _read_idx(img_file), _read_idx(lbl_file)
    if max_samples is not None:
        images, labels = images[:max_samples], labels[:max_samples]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES)})
    return datasets.Dataset.from_dict({"image": list(images), "label": labels.astype(np.int64)}, features=features)


def is_local_path(name: str) -> bool:
    """Whether ``name`` is written as a local path rather than a Hub id (``owner/name``).

    Example:
        >>> is_local_path("./data"), is_local_path("/a/b/c"), is_local_path("timm/oxford-iiit-pet")
        (True, True, False)
    """
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or bool(re.match(r"^[A-Za-z]:[\\/]", name))


def load_source(source: str | os.PathLike | datasets.Dataset | datasets.DatasetDict, *,
                split: str | None = "train", name: str | None = None, revision: str | None = None,
                data_dir: str | None = None, data_files: str | list | dict | None = None,
                token: str | bool | None = None) -> datasets.Dataset | datasets.DatasetDict:
    """Load ``source``: ``"fashion-mnist"``, a ``save_to_disk`` directory, an image folder, or a Hub id.

    The one dataset loader of the library (protect, verify, push and evaluate use it). A ``Dataset`` or
    ``DatasetDict`` object is taken as it is. With ``split`` set, returns that split as a Dataset;
    ``split=None`` returns what was loaded. A Hub id is read with ``datasets.load_dataset``, which
    takes the config ``name``, ``revision``, ``data_dir``, ``data_files`` and ``token`` as given
    (a local source refuses the first four, and needs no token).

    Example:
        >>> ds = load_source("path/saved_with_save_to_disk", split="train")  # doctest: +SKIP
        >>> grey = load_source("me/two-configs", name="grey", revision="v2")  # doctest: +SKIP
    """
    hub_only = {k: v for k, v in (("name", name), ("revision", revision), ("data_dir", data_dir),
                                  ("data_files", data_files)) if v is not None}
    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        _refuse_hub_options(hub_only, "a dataset object")
        ds = source
    else:
        source = str(source)
        p = Path(source).expanduser()
        if source == "fashion-mnist":
            _refuse_hub_options(hub_only, "'fashion-mnist' (the Debian package)")
            return load_fashion_mnist(split or "train")
        if p.is_dir():
            _refuse_hub_options(hub_only, f"{source!r}, a local directory")
            if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
                ds = datasets.load_from_disk(str(p))
            else:
                ds = datasets.load_dataset("imagefolder", data_dir=str(p))
        elif p.exists():
            raise ValueError(f"{source} is a file; pass a directory (save_to_disk or image folder) or a Hub id.")
        elif is_local_path(source):
            raise FileNotFoundError(f"Dataset directory {source!r} does not exist; give a save_to_disk directory, an "
                                    "image folder or a Hub id (owner/name).")
        else:
            ds = datasets.load_dataset(source, **hub_only, token=token)
    if split is None or isinstance(ds, datasets.Dataset):
        return ds
    if split not in ds:
        raise KeyError(f"split {split!r} not in {source}; available splits: {list(ds)}")
    return ds[split]


def _refuse_hub_options(options: dict, what: str) -> None:
    if options:
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ValueError(f"{given}: these select what is read from a Hub dataset repo; {what} is not one. Leave "
                         "them out, or give the Hub id (owner/name) of the dataset.")


def load_balanced_fashion_mnist(split: str, n: int, skip: int = 0) -> datasets.Dataset:
    """``n // 10`` images of every class (file order) of a Fashion-MNIST split, after the first
    ``skip // 10`` of each class (``skip=n_train`` gives a validation set disjoint from the
    ``skip=0`` subset): the benchmarks' balanced subsets.

    Reads only the first ``3 (n + skip) + 100`` rows (at most the whole split), so small
    subsets stay fast; the classes are shuffled in the files, so every class has enough rows.

    Example:
        >>> ds = load_balanced_fashion_mnist("train", 100)  # doctest: +SKIP
        >>> sorted(set(ds["label"])) == list(range(10))  # doctest: +SKIP
        True
    """
    per_class, skipped = n // len(FASHION_MNIST_CLASSES), skip // len(FASHION_MNIST_CLASSES)
    if per_class < 1:
        raise ValueError(f"need at least {len(FASHION_MNIST_CLASSES)} images (one per class), got n={n}")
    total = 60_000 if split == "train" else 10_000
    ds = load_fashion_mnist(split, max_samples=min(total, 3 * (n + skip) + 100))
    labels = np.asarray(ds["label"])
    picked = [np.flatnonzero(labels == c)[skipped : skipped + per_class] for c in range(len(FASHION_MNIST_CLASSES))]
    short = [c for c, idx in enumerate(picked) if len(idx) < per_class]
    if short:
        raise ValueError(f"Fashion-MNIST {split}: classes {short} have fewer than {per_class} images")
    return ds.select(np.sort(np.concatenate(picked)).tolist())
