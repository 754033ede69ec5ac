"""The reads of ``datasets`` internals, against the installed ``datasets``: these fail when an update changes them."""

from __future__ import annotations

import io

import datasets
import numpy as np
from PIL import Image

from uc_datasets.core.map_context import map_flags, mapped_features, stored_column


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _ds() -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"image": [{"bytes": _png(), "path": None}] * 2, "label": [0, 1]},
                                      features=features)


def test_map_flags_tell_an_index_from_a_rank_in_an_unbatched_map():
    seen = []

    def fn(example, extra):
        seen.append(map_flags())
        return {}

    _ds().map(fn, with_indices=True, load_from_cache_file=False)
    _ds().map(fn, with_rank=True, load_from_cache_file=False)
    assert seen[0] == (True, False) and seen[-1] == (False, True)
    assert map_flags() is None  # outside a map


def test_mapped_features_are_the_dataset_features():
    seen = []
    _ds().map(lambda batch: seen.append(mapped_features(batch)) or {}, batched=True, load_from_cache_file=False)
    assert seen and seen[0]["label"].names == ["a", "b"]


def test_stored_column_gives_the_bytes_of_a_corrupt_image():
    bad = datasets.Dataset.from_dict({"image": [{"bytes": b"not an image", "path": None}]},
                                     features=datasets.Features({"image": datasets.Image()}))
    seen = {}

    def fn(examples):
        try:
            examples["image"]
        except Exception:  # noqa: BLE001 - PIL's error for corrupt bytes
            seen["stored"] = stored_column(examples, "image")
        return {}

    bad.map(fn, batched=True, load_from_cache_file=False)
    assert seen["stored"] == [{"bytes": b"not an image", "path": None}]
    bad.map(fn, load_from_cache_file=False)
    assert seen["stored"] == {"bytes": b"not an image", "path": None}
    assert stored_column({"image": []}, "image") is None
