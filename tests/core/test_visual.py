"""PSNR / SSIM of uc_datasets.core.visual: exact values, an independent SSIM, flat memory."""

import math
import pickle

import numpy as np
import pytest
import torch

from uc_datasets.core.visual import VisualCostStream, psnr, ssim, visual_cost


def _sign_pattern(levels: int, shape=(1, 3, 32, 32), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mid-grey clean images and the same images plus a fixed random +-levels sign pattern (no clipping)."""
    sign = torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    clean = torch.full(shape, 128, dtype=torch.uint8)
    return clean, (clean.to(torch.int16) + levels * sign).to(torch.uint8)


@pytest.mark.parametrize("levels, expected", [(16, 24.05), (8, 30.07)])
def test_a_sign_pattern_at_eps_has_the_exact_psnr(levels, expected):
    assert abs(10 * math.log10(255**2 / levels**2) - expected) < 0.01  # the analytic value
    clean, prot = _sign_pattern(levels)
    result = visual_cost(clean, prot)
    for channel in ("R", "G", "B"):
        stats = result["psnr"][channel]
        assert abs(stats["mean"] - expected) < 0.01 and abs(stats["worst"] - expected) < 0.01
        assert abs(stats["p5"] - expected) < 0.01
    grey_clean, grey_prot = _sign_pattern(levels, shape=(2, 1, 16, 16))
    assert abs(visual_cost(grey_clean, grey_prot)["psnr"]["luminance"]["mean"] - expected) < 0.01
    assert set(visual_cost(grey_clean, grey_prot)["psnr"]) == {"luminance"}  # grey: no colour channels


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. (2004) written out: explicit weighted sums over every valid 11x11 window."""
    r = np.arange(11) - 5
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_formula_written_out_and_the_analytic_cases():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (14, 15)).astype(np.float64)
    y = np.clip(x + rng.integers(-20, 21, x.shape), 0, 255)
    assert ssim(x, y) == pytest.approx(_ssim_by_hand(x, y), abs=1e-10)
    assert 0.5 < ssim(x, y) < 0.99
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    c1 = (0.01 * 255) ** 2  # two flat images: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1)
    assert ssim(np.full((12, 12), 100.0), np.full((12, 12), 110.0)) == pytest.approx(
        (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-12)


def test_ssim_of_images_smaller_than_the_window():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6, 9)).astype(np.float64)
    assert ssim(x, x) == pytest.approx(1.0)
    assert 0 < ssim(x, np.clip(x + 30, 0, 255)) < 1
    c1 = (0.01 * 255) ** 2  # 1x1: the pixel values themselves
    assert ssim(np.array([[100.0]]), np.array([[110.0]])) == pytest.approx((2 * 100 * 110 + c1) /
                                                                          (100**2 + 110**2 + c1))


def test_psnr_of_identical_images_is_infinite_and_they_are_counted_apart():
    x = np.full((4, 4), 50)
    assert psnr(x, x) == math.inf
    clean, prot = _sign_pattern(8, shape=(3, 3, 8, 8))
    prot[1] = clean[1]
    result = visual_cost(clean, prot)
    assert result["identical"] == 1 and result["psnr"]["luminance"]["n_images"] == 2


def test_worst_and_fifth_percentile_name_the_worst_images():
    clean = torch.full((20, 1, 16, 16), 128, dtype=torch.uint8)
    prot = clean.clone()
    for i in range(20):
        prot[i, 0, 0, :] += 1 + (i == 7) * 30  # image 7 is the worst
    stats = visual_cost(clean, prot)["psnr"]["luminance"]
    assert stats["worst_index"] == 7 and stats["worst"] < stats["p5"] <= stats["mean"]


def test_the_stream_keeps_no_per_image_state():
    """Memory flat in N: the accumulator after 300 images is the same size as after 3."""
    def pairs(n):
        rng = np.random.default_rng(0)
        for _ in range(n):
            a = rng.integers(20, 230, (12, 12, 3), dtype=np.uint8)
            yield a, (a.astype(np.int16) + rng.integers(-8, 9, a.shape)).astype(np.uint8)

    sizes = []
    for n in (3, 300):
        stream = VisualCostStream()
        for i, (a, b) in enumerate(pairs(n)):
            stream.add(a, b, index=i)
        sizes.append(len(pickle.dumps(stream)))
        assert stream.result()["ssim"]["R"]["n_images"] == n
    assert abs(sizes[1] - sizes[0]) < 100  # ints pickle a few bytes longer; per-image state would add >= 2,400


def test_visual_cost_streams_a_generator_and_refuses_floats():
    def gen():
        for _ in range(5):
            yield torch.full((3, 12, 12), 100, dtype=torch.uint8)

    prot = (t + 4 for t in gen())
    assert visual_cost(gen(), prot)["psnr"]["G"]["n_images"] == 5
    with pytest.raises(ValueError, match="uint8"):
        visual_cost(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
