"""Every bad-input case listed in DEVELOPERS.md: a clear error or a documented handling."""

import io

import datasets
import numpy as np
import pytest
from PIL import Image

from tests.conftest import FAST_FIT, image_dataset, structured_images
from uc_datasets import UnlearnableClusters, verify
from uc_datasets.imaging import ImageDecodeError, ImageModeError


def _uc(tiny_clip, **kw):
    return UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "epochs": 1, **kw})


def test_missing_column_names_the_columns(tiny_clip, rgb40):
    with pytest.raises(KeyError, match=r"column 'img' not found; the dataset has columns \['image', 'label'\]"):
        _uc(tiny_clip).fit(rgb40, image_column="img")


def test_non_image_column(tiny_clip, rgb40):
    with pytest.raises(TypeError, match="cast_column"):
        _uc(tiny_clip).fit(rgb40, image_column="label")


def test_empty_dataset(tiny_clip, rgb40):
    with pytest.raises(ValueError, match="empty"):
        _uc(tiny_clip).fit(rgb40.select([]))


def test_datasetdict_is_refused_with_a_hint(tiny_clip, rgb40):
    with pytest.raises(TypeError, match=r"ds\['train'\]"):
        _uc(tiny_clip).fit(datasets.DatasetDict({"train": rgb40}))


def test_too_few_images_for_the_clusters(tiny_clip, rgb40):
    with pytest.raises(ValueError, match="cannot make n_clusters=4"):
        _uc(tiny_clip).fit(rgb40.select(range(3)))


def test_wrong_epsilon(tiny_clip):
    with pytest.raises(ValueError, match="Did you mean"):
        _uc(tiny_clip, epsilon=16)


def test_corrupt_bytes_name_the_row_in_fit_and_map(tiny_clip, fitted):
    good = structured_images(8)
    buf = io.BytesIO()
    good[0].save(buf, format="PNG")
    rows = [{"bytes": buf.getvalue(), "path": None}] * 7 + [{"bytes": b"\x89PNG\r\n\x1a\ngarbage", "path": None}]
    ds = datasets.Dataset.from_dict({"image": rows}).cast_column("image", datasets.Image())
    with pytest.raises(ImageDecodeError, match="row 7 of column 'image'.*could not be decoded"):
        _uc(tiny_clip).fit(ds)
    _, prot = fitted
    undecoded = ds.cast_column("image", datasets.Image(decode=False))  # map decodes itself, errors are ours
    with pytest.raises(ImageDecodeError, match="row 7"):
        undecoded.map(prot, batched=True, batch_size=8)


def test_mixed_modes_fit_and_protect(tiny_clip, fitted):
    """Grey, RGBA, palette, CMYK and bilevel images in one dataset: documented handling."""
    base = structured_images(6, size=(20, 20))
    pal = base[2].convert("P", palette=Image.ADAPTIVE)
    imgs = [base[0].convert("L"), base[1].convert("RGBA"), pal, base[3].convert("CMYK"), base[4].convert("1"),
            base[5]]
    ds = image_dataset(imgs)
    prot = _uc(tiny_clip).fit(ds)
    out = ds.map(prot, batched=True)
    modes = [r["image"].mode for r in out]
    assert modes == ["L", "RGBA", "RGB", "RGB", "L", "RGB"]  # P, CMYK -> RGB; 1 -> L (DEVELOPERS.md)
    assert verify(ds, out, 8 / 255, progress=False).passed


def test_sixteen_bit_images_are_refused(tiny_clip):
    imgs = structured_images(5, size=(8, 8))
    i16 = Image.fromarray(np.full((8, 8), 40000, np.uint16))
    assert i16.mode.startswith("I")
    ds = image_dataset([*imgs, i16])
    with pytest.raises(ImageModeError, match="row 5.*16/32-bit"):
        _uc(tiny_clip).fit(ds)


def test_one_pixel_images(tiny_clip):
    imgs = [Image.new("RGB", (1, 1), (i * 20, 255 - i * 20, 128)) for i in range(8)]
    ds = image_dataset(imgs)
    prot = _uc(tiny_clip).fit(ds)
    out = ds.map(prot, batched=True)
    assert all(r["image"].size == (1, 1) for r in out)
    r = verify(ds, out, 8 / 255, progress=False)
    assert r.max_deviation <= 8


def test_huge_images_are_refused_before_work(tiny_clip, fitted):
    imgs = [*structured_images(5, size=(8, 8)), Image.new("L", (3000, 2000))]
    ds = image_dataset(imgs)
    with pytest.raises(ValueError, match="row 5.*max_pixels"):
        UnlearnableClusters(surrogate=tiny_clip, max_pixels=5_000_000, **{**FAST_FIT, "epochs": 1}).fit(ds)
    _, prot = fitted
    prot.max_pixels = 5_000_000
    try:
        with pytest.raises(ValueError, match="max_pixels"):
            ds.map(prot, batched=True)
    finally:
        prot.max_pixels = 64_000_000
