"""Batched image augmentations in pure torch, on float images (B, C, H, W) in [0, 1].

The victims' training augmentation (``augment_batch``: random crop or random-resized crop,
then a horizontal flip), grayscale, colour jitter and SimCLR's views. Shared by the victims,
the hacker's SimCLR and the methods that train under the victims' augmentation. Torchvision
is not used: it does not import beside our torch.

Example:
    >>> import torch
    >>> augment_batch(torch.rand(4, 3, 16, 16)).shape
    torch.Size([4, 3, 16, 16])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from uc_datasets.core.imaging import LUMA_WEIGHTS, crop_at

AUGMENTATIONS = ("crop", "resized-crop", "none")


def random_flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Flip each image horizontally with probability ``p``.

    Example:
        >>> random_flip(torch.arange(2.0).view(1, 1, 1, 2), p=1.0).flatten().tolist()
        [1.0, 0.0]
    """
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by ``padding`` and take a random crop of the original size, per image.

    Example:
        >>> random_crop(torch.ones(2, 3, 8, 8), 1).shape
        torch.Size([2, 3, 8, 8])
    """
    if padding <= 0:
        return x
    batch = x.shape[0]
    top = torch.randint(0, 2 * padding + 1, (batch,), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (batch,), device=x.device)
    return crop_at(x, padding, top, left)


def random_resized_crop(
    x: torch.Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Random-resized crop (Inception-style) back to the input size, bilinear, per image.

    Example:
        >>> random_resized_crop(torch.ones(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """
    batch = x.shape[0]
    area = torch.empty(batch, device=x.device).uniform_(*scale)
    log_ratio = torch.empty(batch, device=x.device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    # Crop sides as fractions of the image side, at most the whole image.
    crop_w = torch.sqrt(area * aspect).clamp(max=1.0)
    crop_h = torch.sqrt(area / aspect).clamp(max=1.0)
    # Centres such that the crop stays inside, in normalised [-1, 1] coordinates.
    cx = (torch.rand(batch, device=x.device) * 2 - 1) * (1 - crop_w)
    cy = (torch.rand(batch, device=x.device) * 2 - 1) * (1 - crop_h)
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w, cx
    theta[:, 1, 1], theta[:, 1, 2] = crop_h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(x: torch.Tensor, mode: str = "crop") -> torch.Tensor:
    """Training augmentation: ``crop`` (pad 1/8 of the side, random crop) or ``resized-crop``,
    then a horizontal flip; ``none`` leaves images unchanged.

    Example:
        >>> augment_batch(torch.rand(4, 3, 16, 16), "resized-crop").shape
        torch.Size([4, 3, 16, 16])
    """
    if mode == "none":
        return x
    if mode == "crop":
        x = random_crop(x, max(1, x.shape[-1] // 8))
    elif mode == "resized-crop":
        x = random_resized_crop(x)
    else:
        raise ValueError(f"Unknown augmentation {mode!r}. Choose from: {', '.join(AUGMENTATIONS)}.")
    return random_flip(x)


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a float batch ``(B, C, H, W)`` (what every augmentation and defence takes)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{name} must be a float tensor of shape (B, C, H, W); got {getattr(x, 'shape', type(x))}.")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1]; got dtype {x.dtype}. Divide uint8 images by 255.")


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Grayscale squeezing: BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, repeated to 3 channels.

    Single-channel input is returned unchanged.

    Example:
        >>> grayscale(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)).flatten().tolist()
        [0.29899999499320984, 0.29899999499320984, 0.29899999499320984]
    """
    check_images(x)
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"grayscale needs 1 or 3 channels; got {x.shape[1]}.")
    weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True).expand_as(x).contiguous()


# RGB -> YIQ (NTSC); a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _factors(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Per-image factors uniform in [max(0, 1 - amount), 1 + amount], shaped (B, 1, 1, 1)."""
    return torch.empty(x.shape[0], device=x.device).uniform_(max(0.0, 1 - amount), 1 + amount).view(-1, 1, 1, 1)


def _adjust_contrast(x: torch.Tensor, amount: float) -> torch.Tensor:
    grey = grayscale(x).mean((1, 2, 3), keepdim=True)
    return grey + (x - grey) * _factors(x, amount)


def _adjust_saturation(x: torch.Tensor, amount: float) -> torch.Tensor:
    grey = grayscale(x)
    return grey + (x - grey) * _factors(x, amount)


def _shift_hue(x: torch.Tensor, amount: float) -> torch.Tensor:
    angle = (2 * math.pi * torch.empty(x.shape[0], device=x.device).uniform_(-amount, amount)).view(-1, 1, 1)
    yiq = torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(x), x)
    i, q = yiq[:, 1], yiq[:, 2]
    rotated = torch.stack([yiq[:, 0], i * angle.cos() - q * angle.sin(), i * angle.sin() + q * angle.cos()], dim=1)
    return torch.einsum("ij,bjhw->bihw", _YIQ_TO_RGB.to(x), rotated)


def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
) -> torch.Tensor:
    """Colour jitter per image, the four changes in a random order per image (as SimCLR's).

    Brightness, contrast and saturation scale by a factor uniform in ``[1 - a, 1 + a]``
    (torchvision's ``ColorJitter`` semantics: blend with black, the image's mean grey, its
    grey version). Hue shifts by up to ``hue`` turns as a rotation of the YIQ chroma plane,
    a cheap linear stand-in for torchvision's HSV shift. Clamped to [0, 1] after each change.

    Example:
        >>> x = torch.rand(2, 3, 4, 4)
        >>> torch.allclose(color_jitter(x, 0.0, 0.0, 0.0, 0.0), x, atol=1e-6)
        True
    """
    ops = [
        lambda y: y * _factors(y, brightness),
        lambda y: _adjust_contrast(y, contrast),
        lambda y: _adjust_saturation(y, saturation),
        lambda y: _shift_hue(y, hue),
    ]
    # Each image gets every change once, in its own random order: at step k, change j is
    # applied to the images whose order[k] == j.
    order = torch.rand(x.shape[0], len(ops), device=x.device).argsort(dim=1)
    x = x.clone()
    for step in range(len(ops)):
        for j, op in enumerate(ops):
            chosen = (order[:, step] == j).nonzero().squeeze(1)
            if chosen.numel():
                x[chosen] = op(x[chosen]).clamp(0, 1)
    return x


def simclr_augment(
    x: torch.Tensor,
    *,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    jitter_strength: float = 0.5,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
) -> torch.Tensor:
    """One random SimCLR view of each image in ``x`` (float, (B, 3, H, W), in [0, 1]).

    Random-resized crop back to (H, W), horizontal flip, colour jitter (strength s: brightness,
    contrast, saturation 0.8 s, hue 0.2 s) with probability ``jitter_p``, grayscale with
    probability ``gray_p``. No Gaussian blur (SimCLR leaves it out on small images). Draws from
    torch's global RNG, so ``set_seed`` makes it reproducible.

    Example:
        >>> simclr_augment(torch.rand(4, 3, 16, 16)).shape
        torch.Size([4, 3, 16, 16])
    """
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(
            f"simclr_augment takes float RGB images (B, 3, H, W) in [0, 1]; got {x.dtype} {tuple(x.shape)}."
        )
    batch = x.shape[0]
    x = random_flip(random_resized_crop(x, scale=crop_scale)).clamp(0, 1)
    s = jitter_strength
    jittered = color_jitter(x, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
    x = torch.where((torch.rand(batch, device=x.device) < jitter_p).view(-1, 1, 1, 1), jittered, x)
    gray = (torch.rand(batch, device=x.device) < gray_p).view(-1, 1, 1, 1)
    return torch.where(gray, grayscale(x), x)
