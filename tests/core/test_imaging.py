import io

import numpy as np
import pytest
import torch
from PIL import Image

from uc_datasets.core.imaging import (
    ImageDecodeError,
    ImageModeError,
    apply_delta,
    check_size,
    content_key,
    decode_image,
    luminance,
    pil_to_float,
    resize_delta,
    to_supported_mode,
)

EPS = 8 / 255


def _delta(h=6, w=6, seed=0, eps=EPS):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, h, w, generator=g) * 2 - 1) * eps


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_native_modes_keep_mode_size_and_bound(mode):
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    arr = rng.integers(0, 256, (9, 13, channels), dtype=np.uint8).squeeze()
    img = Image.fromarray(arr, mode=mode)
    out = apply_delta(img, _delta(), EPS)
    assert out.mode == mode and out.size == img.size
    diff = np.abs(np.asarray(out, np.int16) - np.asarray(img, np.int16))
    assert diff.max() <= 8
    assert diff.max() > 0
    if mode in ("RGBA", "LA"):  # alpha is bit-exact
        assert np.array_equal(np.asarray(out)[..., -1], np.asarray(img)[..., -1])


def test_apply_delta_exact_values_and_clipping():
    img = Image.fromarray(np.array([[[0, 128, 255]]], np.uint8))
    delta = torch.tensor([-4.0, 4.0, 4.0]).view(3, 1, 1) / 255
    out = np.asarray(apply_delta(img, delta, EPS))
    assert out.tolist() == [[[0, 132, 255]]]  # clipped at both ends, no uint8 wrap-around


def test_grey_images_get_the_luminance_of_delta():
    img = Image.new("L", (1, 1), 100)
    delta = torch.tensor([8.0, -8.0, 8.0]).view(3, 1, 1) / 255
    expected = round(100 + 8 * (0.299 - 0.587 + 0.114))
    assert apply_delta(img, delta, EPS).getpixel((0, 0)) == expected
    assert luminance(delta).shape == (1, 1, 1)


def test_resize_delta_stays_in_the_ball():
    d = torch.sign(_delta(7, 5)) * EPS  # worst case: all at the bound, alternating signs
    for hw in [(1, 1), (3, 100), (64, 64)]:
        r = resize_delta(d, hw)
        assert r.shape == (3, *hw) and float(r.abs().max()) <= EPS + 1e-7


def test_one_pixel_and_odd_sizes():
    for size in [(1, 1), (1, 7), (13, 1)]:
        img = Image.new("RGB", size, (50, 60, 70))
        out = apply_delta(img, _delta(), EPS)
        assert out.size == size


def test_converted_modes():
    p = Image.new("P", (4, 4))
    p.putpalette([10, 20, 30] * 256)
    assert to_supported_mode(p).mode == "RGB"
    pt = Image.new("P", (4, 4))
    pt.info["transparency"] = 0
    assert to_supported_mode(pt).mode == "RGBA"
    assert to_supported_mode(Image.new("CMYK", (2, 2))).mode == "RGB"
    assert to_supported_mode(Image.new("1", (2, 2))).mode == "L"


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_bit_depth_is_refused_with_advice(mode):
    with pytest.raises(ImageModeError, match="convert it to 8 bit yourself|Convert it to 8 bit"):
        to_supported_mode(Image.new(mode, (2, 2)), where="row 3")


def test_corrupt_bytes_raise_clear_error():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    with pytest.raises(ImageDecodeError, match="row 5.*could not be decoded"):
        decode_image({"bytes": b"not an image", "path": None}, where="row 5")
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        decode_image(buf.getvalue()[:40], where="row 6")  # truncated PNG
    with pytest.raises(ImageDecodeError, match="empty image entry"):
        decode_image({"bytes": None, "path": None}, where="row 7")


def test_huge_images_are_refused_before_allocating():
    big = Image.new("L", (5000, 5000))
    with pytest.raises(ValueError, match="max_pixels"):
        check_size(big, max_pixels=10_000_000, where="row 0")
    check_size(big, max_pixels=25_000_000)


def test_pil_to_float_and_content_key():
    img = Image.new("L", (3, 2), 255)
    t = pil_to_float(img)
    assert t.shape == (3, 2, 3) and float(t.min()) == 1.0
    assert content_key(img) == content_key(img.copy())
    assert content_key(img) != content_key(Image.new("L", (3, 2), 254))
    assert content_key(img) != content_key(Image.new("L", (2, 3), 255))
