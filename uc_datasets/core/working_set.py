"""From a Hugging Face dataset to validated, working-resolution image tensors."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import datasets
import torch
from PIL import Image

from uc_datasets.core.imaging import (
    DEFAULT_MAX_PIXELS,
    check_size,
    content_key,
    decode_image,
    load_native,
    supported_mode,
    working_tensor,
)

logger = logging.getLogger(__name__)

#: Working-set images kept in memory (uint8) when they fit in this many bytes.
IN_MEMORY_BYTES = 2 * 1024**3


def check_image_column(ds: datasets.Dataset, image_column: str) -> None:
    """Raise a clear error if ``ds`` is empty or has no image column ``image_column``."""
    if not isinstance(ds, datasets.Dataset):
        hint = " Pick a split first, e.g. ds['train']." if isinstance(ds, datasets.DatasetDict) else ""
        raise TypeError(f"expected a datasets.Dataset, got {type(ds).__name__}.{hint}")
    if image_column not in ds.column_names:
        raise KeyError(
            f"column {image_column!r} not found; the dataset has columns {ds.column_names}. "
            "Pass image_column=... naming the image column."
        )
    feat = ds.features[image_column]
    if not isinstance(feat, datasets.Image):
        raise TypeError(
            f"column {image_column!r} is {feat!r}, not an image feature. Cast it first: "
            f"ds = ds.cast_column({image_column!r}, datasets.Image())"
        )
    if len(ds) == 0:
        raise ValueError("the dataset is empty: there is nothing to protect.")


def feature_mode(ds: datasets.Dataset, image_column: str) -> str | None:
    """The mode an ``Image(mode=...)`` feature converts its images to on decoding, or None."""
    feat = ds.features.get(image_column)
    return getattr(feat, "mode", None) if isinstance(feat, datasets.Image) else None


def undecoded(ds: datasets.Dataset, image_column: str) -> datasets.Dataset:
    """``ds`` with its image column left as bytes, so we decode (and report errors) ourselves."""
    return ds.cast_column(image_column, datasets.Image(decode=False))


def scan_sizes(ds: datasets.Dataset, image_column: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               progress: bool = True) -> tuple[Counter, int]:
    """Read every image header: check mode and size, count sizes and grey images.

    Returns ``(Counter of (h, w), number of grey images)``. Raises on the first bad image,
    naming its row. Pixel data is decoded later (and checked then).
    """
    from tqdm.auto import tqdm

    forced = feature_mode(ds, image_column)
    raw = undecoded(ds, image_column)
    sizes: Counter = Counter()
    grey = 0
    for i, row in enumerate(tqdm(raw, desc="checking images", disable=not progress, total=len(raw))):
        where = f"row {i} of column {image_column!r}"
        img = decode_image(row[image_column], where=where, load=False)
        mode = supported_mode(img if forced is None else Image.new(forced, (1, 1)), where=where)
        check_size(img, max_pixels=max_pixels, where=where)
        sizes[(img.size[1], img.size[0])] += 1
        grey += mode in ("L", "LA")
    return sizes, grey


def choose_working_hw(sizes: Counter, working_size: int) -> tuple[int, int]:
    """The dataset's own size when every image shares one, else ``working_size`` square."""
    if len(sizes) == 1:
        return next(iter(sizes))
    return (working_size, working_size)


class WorkingSet(torch.utils.data.Dataset):
    """Torch view of an HF image dataset: ``(uint8 (3, h, w), is_grey, index)`` per item.

    Small sets (under :data:`IN_MEMORY_BYTES`) are decoded once and kept in memory.
    """

    def __init__(self, ds: datasets.Dataset, image_column: str, hw: tuple[int, int], *,
                 max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True):
        self.mode = feature_mode(ds, image_column)
        self.raw = undecoded(ds, image_column)
        self.image_column = image_column
        self.hw = tuple(hw)
        self.max_pixels = max_pixels
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.keys: list[bytes] | None = None
        if len(ds) * 3 * hw[0] * hw[1] <= IN_MEMORY_BYTES:
            from tqdm.auto import tqdm

            xs = torch.empty(len(ds), 3, *hw, dtype=torch.uint8)
            grey = torch.empty(len(ds), dtype=torch.bool)
            self.keys = []
            for i in tqdm(range(len(ds)), desc="loading images", disable=not progress):
                img = self.native(i)
                xs[i], grey[i] = working_tensor(img, self.hw), img.mode in ("L", "LA")
                self.keys.append(content_key(img))
            self._cache = (xs, grey)

    def native(self, i: int) -> Image.Image:
        """Row ``i`` decoded, checked and converted to a supported mode."""
        return load_native(self.raw[i][self.image_column], index=i, image_column=self.image_column,
                           max_pixels=self.max_pixels, mode=self.mode)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image as one uint8 tensor ``(N, 3, h, w)`` and the grey flags ``(N,)``."""
        if self._cache is not None:
            return self._cache
        items = [self._decode(i) for i in range(len(self))]
        return torch.stack([it[0] for it in items]), torch.tensor([bool(it[1]) for it in items], dtype=torch.bool)

    def content_keys(self) -> list[bytes]:
        """:func:`~uc_datasets.core.imaging.content_key` of every image, in order."""
        if self.keys is None:
            self.keys = [content_key(self.native(i)) for i in range(len(self))]
        return self.keys

    def _decode(self, i: int) -> tuple[torch.Tensor, bool]:
        img = self.native(i)
        return working_tensor(img, self.hw), img.mode in ("L", "LA")

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool, int]:
        if self._cache is not None:
            return self._cache[0][i], bool(self._cache[1][i]), i
        x, g = self._decode(i)
        return x, g, i


def prepare_working_set(ds: datasets.Dataset, image_column: str, *, working_size: int,
                        max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True,
                        check_sizes: Callable[[Counter], None] | None = None) -> tuple[WorkingSet, int]:
    """The opening of every fit (UC and the baselines): check the column, read every header,
    choose the working resolution and build the :class:`WorkingSet`.

    ``check_sizes`` gets the ``Counter`` of ``(h, w)`` sizes before any pixel is decoded (to
    refuse settings the images cannot hold). Returns ``(working set, number of grey images)``;
    the resolution is ``working_set.hw``.
    """
    check_image_column(ds, image_column)
    sizes, n_grey = scan_sizes(ds, image_column, max_pixels=max_pixels, progress=progress)
    if check_sizes is not None:
        check_sizes(sizes)
    hw = choose_working_hw(sizes, working_size)
    logger.info("%d images, %d distinct sizes, %d grey; working resolution %s", len(ds), len(sizes), n_grey, hw)
    return WorkingSet(ds, image_column, hw, max_pixels=max_pixels, progress=progress), n_grey

