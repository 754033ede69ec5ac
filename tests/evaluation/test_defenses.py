"""Defences: exact outputs on tiny tensors."""

import math

import pytest
import torch

from uc_datasets.core.augment import grayscale
from uc_datasets.evaluation.defenses import (
    DEFENSES,
    cutmix,
    cutout,
    gaussian_kernel1d,
    gaussian_smoothing,
    get_defense,
    jpeg_compress,
    linear_directions,
    mixup,
    orthogonal_projection,
    parse_defense_spec,
    pgd_attack,
    project_out,
)


def two_images(height: int = 4, width: int = 4) -> torch.Tensor:
    """Image 0 all zeros, image 1 all ones, one channel."""
    return torch.stack([torch.zeros(1, height, width), torch.ones(1, height, width)])


# --- mixup ----------------------------------------------------------------------------------


def test_mixup_exact():
    x, y = two_images(2, 2), torch.eye(2)
    xm, ym = mixup(x, y, lam=0.25, perm=torch.tensor([1, 0]))
    assert torch.equal(xm[0], torch.full((1, 2, 2), 0.75))
    assert torch.equal(xm[1], torch.full((1, 2, 2), 0.25))
    assert torch.equal(ym, torch.tensor([[0.25, 0.75], [0.75, 0.25]]))


def test_mixup_random_draw_is_a_convex_combination():
    torch.manual_seed(0)
    x, y = two_images(2, 2), torch.eye(2)
    xm, ym = mixup(x, y, alpha=1.0)
    assert torch.allclose(ym.sum(1), torch.ones(2))
    # Pixel value of a 0/1 image mixed with weight lam equals its label weight on class 1.
    assert torch.allclose(xm[:, 0, 0, 0], ym[:, 1])


def test_mixup_rejects_bad_inputs():
    x, y = two_images(), torch.eye(2)
    with pytest.raises(ValueError, match="permutation"):
        mixup(x, y, lam=0.5, perm=torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="lam must be in"):
        mixup(x, y, lam=1.5)
    with pytest.raises(ValueError, match="one_hot"):
        mixup(x, torch.tensor([0, 1]), lam=0.5)
    with pytest.raises(ValueError, match="float"):
        mixup(x.to(torch.uint8), y, lam=0.5)


# --- cutmix ---------------------------------------------------------------------------------


def test_cutmix_exact_box_and_label_weight():
    x, y = two_images(4, 4), torch.eye(2)
    xc, yc = cutmix(x, y, box=(1, 1, 3, 3), perm=torch.tensor([1, 0]))
    expected0 = torch.zeros(1, 4, 4)
    expected0[:, 1:3, 1:3] = 1.0
    assert torch.equal(xc[0], expected0)
    assert torch.equal(xc[1], 1.0 - expected0)
    assert torch.equal(yc, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    assert torch.equal(x, two_images(4, 4)), "the input must not be modified"


def test_cutmix_random_box_matches_label_weight():
    torch.manual_seed(3)
    x, y = two_images(8, 8), torch.eye(2)
    for _ in range(5):
        xc, yc = cutmix(x, y, alpha=1.0, perm=torch.tensor([1, 0]))
        pasted = xc[0].sum().item() / 64  # fraction of image 0 replaced by ones
        assert yc[0, 1].item() == pytest.approx(pasted)


def test_cutmix_rejects_box_outside_image():
    with pytest.raises(ValueError, match="box"):
        cutmix(two_images(), torch.eye(2), box=(0, 0, 5, 2), perm=torch.tensor([1, 0]))


# --- cutout ---------------------------------------------------------------------------------


def test_cutout_exact_inside_and_at_border():
    x = torch.ones(2, 1, 4, 4)
    out = cutout(x, 2, centers=torch.tensor([[2, 2], [0, 0]]))
    expected = torch.ones(2, 1, 4, 4)
    expected[0, :, 1:3, 1:3] = 0.0  # side 2 centred at (2, 2) covers rows/cols 1..2
    expected[1, :, 0:1, 0:1] = 0.0  # centred at (0, 0): clipped to the corner pixel
    assert torch.equal(out, expected)
    assert torch.equal(x, torch.ones(2, 1, 4, 4))


def test_cutout_odd_size_and_fill():
    out = cutout(torch.zeros(1, 2, 5, 5), 3, centers=torch.tensor([[2, 2]]), fill=0.5)
    expected = torch.zeros(1, 2, 5, 5)
    expected[..., 1:4, 1:4] = 0.5
    assert torch.equal(out, expected)


def test_cutout_rejects_bad_size():
    with pytest.raises(ValueError, match="size"):
        cutout(torch.ones(1, 1, 4, 4), 0)


# --- Gaussian smoothing ---------------------------------------------------------------------


def test_gaussian_kernel_exact_taps():
    w = math.exp(-0.5)
    expected = torch.tensor([w, 1.0, w]) / (1.0 + 2 * w)
    assert torch.allclose(gaussian_kernel1d(3, 1.0), expected, atol=1e-7, rtol=0)
    assert gaussian_kernel1d(3, 1.0).tolist() == pytest.approx([0.274068619, 0.451862762, 0.274068619], abs=1e-8)


def test_gaussian_smoothing_impulse_response_is_outer_product():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    out = gaussian_smoothing(x, kernel_size=3, sigma=1.0)
    taps = gaussian_kernel1d(3, 1.0)
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] = torch.outer(taps, taps)
    assert torch.allclose(out[0, 0], expected, atol=1e-7, rtol=0)


def test_gaussian_smoothing_keeps_constants_and_shape():
    x = torch.full((2, 3, 4, 6), 0.3)
    out = gaussian_smoothing(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-7, rtol=0)


def test_gaussian_kernel_rejects_even_size():
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel1d(4, 1.0)


# --- image-shortcut squeezing ---------------------------------------------------------------


def test_grayscale_exact_luma():
    x = torch.tensor([[1.0, 0.0, 0.2], [0.0, 1.0, 0.4], [0.0, 0.0, 0.6]]).view(1, 3, 1, 3)
    out = grayscale(x)
    expected = torch.tensor([0.299, 0.587, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6])
    assert out.shape == (1, 3, 1, 3)
    for channel in range(3):
        assert torch.allclose(out[0, channel, 0], expected, atol=1e-7, rtol=0)


def test_grayscale_keeps_single_channel():
    x = torch.rand(2, 1, 3, 3)
    assert torch.equal(grayscale(x), x)


@pytest.mark.parametrize("value, expected", [(128, 128), (200, 198), (77, 78), (0, 0), (255, 255)])
def test_jpeg_quality_10_on_flat_images_is_exact(value, expected):
    # A flat 8x8 block keeps only its DC coefficient; at quality 10 the luminance DC step is 80:
    # 200 -> 8 * (200 - 128) = 576 -> round(576 / 80) * 80 = 560 -> 128 + 560 / 8 = 198.
    for channels in (1, 3):
        x = torch.full((1, channels, 8, 8), value / 255)
        out = jpeg_compress(x, quality=10)
        assert out.shape == x.shape
        assert torch.equal(out, torch.full_like(x, expected / 255))


def test_jpeg_changes_noise_and_stays_on_8bit_grid():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    out = jpeg_compress(x)
    assert (out - x).abs().max() > 0.1
    assert torch.equal(out * 255, (out * 255).round())
    assert out.min() >= 0 and out.max() <= 1


def test_jpeg_rejects_bad_quality():
    with pytest.raises(ValueError, match="quality"):
        jpeg_compress(torch.zeros(1, 3, 8, 8), quality=0)


# --- PGD ------------------------------------------------------------------------------------


class Linear2(torch.nn.Module):
    """logits = [0, w . x]: the cross-entropy gradient for label 0 has the sign of w."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_pgd_exact_on_linear_model():
    w = torch.tensor([1.0, -2.0, 0.0, 3.0])
    x = torch.full((2, 1, 2, 2), 0.5)
    x[1] = torch.tensor([[0.98, 0.01], [0.5, 0.5]])
    y = torch.zeros(2, dtype=torch.long)
    out = pgd_attack(Linear2(w), x, y, eps=0.1, alpha=0.04, steps=3, random_start=False)
    # Three steps of 0.04 along sign(w), projected to the 0.1 ball and to [0, 1].
    expected = torch.tensor([[0.6, 0.4], [0.5, 0.6]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    expected[1] = torch.tensor([[1.0, 0.0], [0.5, 0.6]])
    assert torch.allclose(out, expected, atol=1e-6, rtol=0)
    assert Linear2(w).w.grad is None


def test_pgd_stays_in_ball_with_random_start():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x = torch.rand(4, 3, 2, 2)
    out = pgd_attack(model, x, torch.tensor([0, 1, 2, 0]), eps=8 / 255, alpha=2 / 255, steps=5)
    assert (out - x).abs().max() <= 8 / 255 + 1e-6
    assert out.min() >= 0 and out.max() <= 1
    loss = torch.nn.functional.cross_entropy
    assert loss(model(out), torch.tensor([0, 1, 2, 0])) > loss(model(x), torch.tensor([0, 1, 2, 0]))


def test_pgd_rejects_bad_parameters():
    with pytest.raises(ValueError, match="steps"):
        pgd_attack(torch.nn.Identity(), torch.zeros(1, 1, 1, 1), torch.zeros(1, dtype=torch.long), steps=0)


# --- registry -------------------------------------------------------------------------------


def test_registry_names_and_hooks():
    assert set(DEFENSES) == {"none", "mixup", "cutmix", "cutout", "gaussian", "jpeg", "grayscale", "pgd", "orthogonal"}
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    gray = get_defense("grayscale")
    assert torch.allclose(gray.apply_test_images(x), torch.full_like(x, 0.299))
    assert torch.allclose(gray.apply_train_images(x), torch.full_like(x, 0.299))
    jpeg = get_defense("jpeg")
    assert jpeg.params == {"quality": 10} and jpeg.test_images is None
    assert torch.equal(get_defense("none").apply_batch(x, torch.eye(1))[0], x)
    assert get_defense("pgd").adversarial is not None
    smooth = get_defense("gaussian:sigma=0.5")
    assert smooth.params == {"kernel_size": 3, "sigma": 0.5}


def test_cutout_defence_uses_half_the_side_by_default():
    torch.manual_seed(0)
    x = torch.ones(8, 3, 8, 8)
    out, _ = get_defense("cutout").apply_batch(x, torch.eye(8))
    zeroed = (out[:, 0] == 0).flatten(1).sum(1)
    assert zeroed.max() == 16 and zeroed.min() >= 4  # a 4x4 square, clipped at most to 2x2


def test_spec_parsing_and_errors():
    assert parse_defense_spec("PGD:eps=8/255, steps=3") == ("pgd", {"eps": 8 / 255, "steps": 3.0})
    with pytest.raises(ValueError, match="Unknown defence 'blur'"):
        get_defense("blur")
    with pytest.raises(ValueError, match="key=value"):
        get_defense("pgd:eps")
    with pytest.raises(ValueError, match="Bad parameters"):
        get_defense("mixup:beta=1")


# --- orthogonal projection ------------------------------------------------------------------


def stripes(n: int, size: int, seed: int, contrast: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes of oriented stripes (0, 90, 45, 135 degrees) with a random phase per image:
    learnable by a CNN, but no class has a mean image a linear model could use."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    angle = torch.tensor([0, math.pi / 2, math.pi / 4, 3 * math.pi / 4])[y]
    coord = xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None]
    phase = torch.rand(n, generator=g) * 2 * math.pi
    img = 0.5 + contrast * torch.sin(2 * math.pi / 4 * coord + phase[:, None, None])
    img = img + 0.05 * torch.randn(n, size, size, generator=g)
    return img[:, None].expand(-1, 3, -1, -1).clamp(0, 1).contiguous(), y


def test_project_out_exact_and_keeps_the_centre():
    basis = torch.tensor([[1.0], [0.0]])
    x = torch.tensor([[[[3.0, 4.0]]], [[[5.0, 6.0]]]])
    assert project_out(x, basis).flatten(1).tolist() == [[0.0, 4.0], [0.0, 6.0]]
    mean = torch.tensor([4.0, 5.0])
    # Centred: the first coordinate becomes the mean's, the second is untouched.
    assert project_out(x, basis, mean).flatten(1).tolist() == [[4.0, 4.0], [4.0, 6.0]]


def test_linear_directions_are_seeded_and_checked():
    x, y = torch.rand(16, 1, 3, 3), torch.arange(16) % 2
    a = linear_directions(x, y, min_steps=5)
    assert a.shape == (2, 9) and torch.equal(a, linear_directions(x, y, min_steps=5))
    with pytest.raises(ValueError, match="as many labels as images"):
        linear_directions(x, y[:3])


def test_orthogonal_projection_removes_a_planted_class_wise_pattern():
    x, y = stripes(256, 16, seed=0)
    pattern = torch.sign(torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))) * 0.1
    poisoned = x + pattern[y]
    projected, basis, mean = orthogonal_projection(poisoned, y)
    assert basis.shape == (3 * 16 * 16, 4)
    torch.testing.assert_close(basis.T @ basis, torch.eye(4), atol=1e-5, rtol=0)
    # The class-discriminative part of each pattern (its deviation from the mean pattern)
    # is mostly in the removed span; a clean image loses little.
    centred = (pattern - pattern.mean(0)).flatten(1)
    removed = (centred @ basis).norm(dim=1) / centred.norm(dim=1)
    assert bool((removed > 0.9).all()), removed
    clean_projected, _, _ = orthogonal_projection(x, y)
    assert float((clean_projected - x).norm() / x.norm()) < 0.05
    # The mean image is kept.
    torch.testing.assert_close(projected.flatten(1).mean(0), mean, atol=1e-4, rtol=0)


def test_orthogonal_defence_lets_a_victim_learn_from_poisoned_data():
    """The check of the issue: a class-wise linear shortcut makes a victim fail on clean test
    data; trained on the projected images it recovers the clean victim's accuracy (within
    0.15; measured: clean 1.00, poisoned 0.23, projected 0.99 at seed 0)."""
    from uc_datasets.core.models import build_victim
    from uc_datasets.evaluation.victims import TrainConfig, train_and_predict

    x, y = stripes(256, 16, seed=0)
    test_x, test_y = stripes(256, 16, seed=1)
    pattern = torch.sign(torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))) * 0.1
    def as_uint8(t: torch.Tensor) -> torch.Tensor:
        return (t.clamp(0, 1) * 255).round().to(torch.uint8)

    config = TrainConfig(epochs=8, batch_size=32, lr=0.05, augment="none")

    def accuracy(images: torch.Tensor, defense: str) -> float:
        victim = build_victim("resnet18", 4, width=0.125, image_size=16, seed=0)
        per_epoch = train_and_predict(victim, as_uint8(images), y, config, as_uint8(test_x),
                                      defense=get_defense(defense), progress=False)
        return float((per_epoch[-1] == test_y).float().mean())

    clean = accuracy(x, "none")
    poisoned = accuracy(x + pattern[y], "none")
    projected = accuracy(x + pattern[y], "orthogonal")
    assert clean > 0.9 and poisoned < 0.45, (clean, poisoned)
    assert projected > clean - 0.15, (clean, poisoned, projected)


def test_orthogonal_defence_registry_and_test_option():
    defense = get_defense("orthogonal:epochs=2,test=1")
    assert defense.params == {"epochs": 2, "test": 1.0} and defense.train_set is not None
    with pytest.raises(RuntimeError, match="before the training set"):
        defense.apply_test_images(torch.rand(2, 3, 4, 4))
    x, y = torch.rand(8, 3, 4, 4), torch.arange(8) % 2
    projected = defense.train_set(x, y)
    assert projected.shape == x.shape and projected.dtype == torch.float32
    assert defense.apply_test_images(x).shape == x.shape
    assert get_defense("orthogonal").test_images is None  # clean test images by default
