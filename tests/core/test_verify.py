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


def test_report_has_psnr_and_ssim_of_a_sign_pattern(clean):
    """A fixed +-8 pattern on images away from 0/255 is 30.07 dB on every channel; the summary says so."""
    rng = np.random.default_rng(0)
    base = [Image.fromarray(rng.integers(40, 200, (20, 24, 3), dtype=np.uint8)) for _ in range(5)]
    sign = rng.integers(0, 2, (20, 24, 3)) * 2 - 1
    prot = [Image.fromarray((np.asarray(b, np.int16) + 8 * sign).astype(np.uint8)) for b in base]
    r = verify(image_dataset(base), image_dataset(prot), 8 / 255, progress=False)
    assert r.passed
    for channel in ("R", "G", "B"):
        assert abs(r.visual["psnr"][channel]["mean"] - 30.07) < 0.01
        assert abs(r.visual["psnr"][channel]["p5"] - 30.07) < 0.01
    assert r.psnr > 30.07 and 0 < r.ssim < 1  # luminance mixes the channels' signs: a smaller error
    assert r.to_dict()["psnr_db"] == r.psnr and f"PSNR {r.psnr:.2f} dB" in r.summary()
    assert "SSIM" in r.summary() and set(r.visual["ssim"]) == {"luminance", "R", "G", "B"}


def test_verify_streams_the_visual_cost_one_image_at_a_time(clean, monkeypatch):
    """No copy of the dataset is kept: at most the current pair of decoded arrays is alive at any time."""
    import sys
    import weakref

    verify_module = sys.modules["uc_datasets.core.verify"]  # the attribute uc_datasets.core.verify is the function

    alive: list[weakref.ref] = []
    most = [0]
    original = verify_module.image_to_array

    def tracked(img):
        arr = original(img)
        alive.append(weakref.ref(arr))
        most[0] = max(most[0], sum(r() is not None for r in alive))
        return arr

    monkeypatch.setattr(verify_module, "image_to_array", tracked)
    many = clean * 5
    prot = [_noisy(i, 8, s) for s, i in enumerate(many)]
    r = verify(image_dataset(many), image_dataset(prot), 8 / 255, progress=False)
    assert r.visual["psnr"]["luminance"]["n_images"] == len(many) == 30
    assert len(alive) == 60 and most[0] <= 4
