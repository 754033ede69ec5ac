import datasets
import numpy as np
import pytest
from PIL import Image

from tests.conftest import image_dataset, jpeg_bytes, structured_images
from uc_datasets import verify


def _shift(img: Image.Image, levels: int, where=(0, 0)) -> Image.Image:
    arr = np.asarray(img).astype(np.int16).copy()
    arr[where[1], where[0]] = np.clip(arr[where[1], where[0]] + levels, 0, 255)
    return Image.fromarray(arr.astype(np.uint8), mode=img.mode)


def _noisy(img, levels, seed=0):
    rng = np.random.default_rng(seed)
    arr = np.asarray(img).astype(np.int16)
    return Image.fromarray(np.clip(arr + rng.integers(-levels, levels + 1, arr.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def clean():
    return structured_images(6, seed=1)


def test_passes_within_bound_and_reports_numbers(clean):
    prot = [_noisy(i, 16, s) for s, i in enumerate(clean)]
    r = verify(image_dataset(clean), image_dataset(prot), 16 / 255, progress=False)
    assert r.passed and r.max_deviation == 16 and 0.7 < r.fraction_changed < 1.0


@pytest.mark.parametrize("eps_levels", [1, 8, 16])
def test_never_passes_one_level_over_the_bound(clean, eps_levels):
    prot = [_noisy(i, eps_levels, s) for s, i in enumerate(clean)]
    base = np.asarray(clean[4]).astype(np.int16)
    arr = base.copy()
    arr[3, 3, 0] = base[3, 3, 0] + eps_levels + 1 if base[3, 3, 0] + eps_levels + 1 <= 255 else base[3, 3, 0] - (
        eps_levels + 1)
    prot[4] = Image.fromarray(arr.astype(np.uint8))
    r = verify(image_dataset(clean), image_dataset(prot), eps_levels / 255, progress=False)
    assert not r.passed
    assert [v["index"] for v in r.violations] == [4]
    assert r.max_deviation == eps_levels + 1


def test_fractional_epsilon_bound_is_ceil(clean):
    prot = [_noisy(i, 5, s) for s, i in enumerate(clean)]
    assert verify(image_dataset(clean), image_dataset(prot), 4.5 / 255, progress=False).passed
    assert not verify(image_dataset(clean), image_dataset(prot), 4.0 / 255, progress=False).passed


def test_unprotected_and_lossy_images_are_named(clean):
    prot = [_noisy(i, 8, s) for s, i in enumerate(clean)]
    prot[2] = clean[2].copy()  # left unprotected
    r = verify(image_dataset(clean), image_dataset(prot), 8 / 255, progress=False)
    assert r.unchanged == [2] and not r.passed
    raw = [{"bytes": jpeg_bytes(p, 100), "path": None} for p in prot]
    ds_p = datasets.Dataset.from_dict({"image": raw, "label": list(range(6))}).cast_column("image", datasets.Image())
    r = verify(image_dataset(clean), ds_p, 8 / 255, progress=False)
    assert {v["index"] for v in r.violations} == set(range(6))
    assert all("losslessly" in v["reason"] for v in r.violations)


def test_size_change_and_bad_arguments(clean):
    prot = [i.resize((10, 10)) for i in clean]
    r = verify(image_dataset(clean), image_dataset(prot), 8 / 255, progress=False)
    assert len(r.violations) == 6 and "size/mode changed" in r.violations[0]["reason"]
    with pytest.raises(ValueError, match="row by row"):
        verify(image_dataset(clean), image_dataset(clean[:3]), 8 / 255, progress=False)
    with pytest.raises(ValueError, match=r"Did you mean epsilon=16/255"):
        verify(image_dataset(clean), image_dataset(clean), 16, progress=False)
