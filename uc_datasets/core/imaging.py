"""PIL <-> tensor conversion, image modes, and lossless application of a perturbation.

Supported modes and what happens to them (also documented in DEVELOPERS.md):

| input mode | output mode | how it is perturbed |
| --- | --- | --- |
| ``RGB`` | ``RGB`` | per-channel perturbation |
| ``RGBA`` | ``RGBA`` | RGB perturbed, alpha kept bit-exact |
| ``L`` | ``L`` | luminance of the perturbation (ITU-R 601-2 weights, as PIL's ``convert("L")``) |
| ``LA`` | ``LA`` | as ``L``, alpha kept bit-exact |
| ``1`` | ``L`` | converted to ``L`` first (a bilevel image cannot hold a perturbation) |
| ``P`` / ``PA`` | ``RGB`` / ``RGBA`` | converted first: a palette cannot hold arbitrary perturbed colours |
| ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` | ``RGB`` | converted to RGB first |
| ``I;16*``, ``I``, ``F`` | refused | 16/32-bit images: converting to 8 bit would destroy data; convert them yourself |

Conversions are deterministic, and :func:`uc_datasets.core.verify` compares against the
converted original, so the epsilon bound is checked in the space that is published.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Modes we perturb natively.
NATIVE_MODES = ("RGB", "RGBA", "L", "LA")
#: Modes converted to a native mode before protection: mode -> target mode.
CONVERTED_MODES = {
    "1": "L",
    "P": "RGB",  # "RGBA" when the palette has transparency, see ``to_supported_mode``
    "PA": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
#: Luminance weights used by PIL's ``convert("L")`` (ITU-R 601-2).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Largest image (pixels) protected by default; larger ones need ``max_pixels`` raised.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageModeError(ValueError):
    """Raised for an image mode that cannot be protected losslessly."""


class ImageDecodeError(ValueError):
    """Raised when the bytes of an image cannot be decoded."""


def decode_image(value: object, *, where: str = "", load: bool = True) -> Image.Image:
    """Return a PIL image from what a ``datasets`` Image column can hold.

    Accepts a PIL image, a ``{"bytes": ..., "path": ...}`` dict (``Image(decode=False)``),
    raw bytes or a file path. Corrupt data raises :class:`ImageDecodeError` naming ``where``.
    ``load=False`` reads only the header (size and mode), which is fast.

    Example:
        >>> img = decode_image(Image.new("RGB", (4, 4)))
        >>> img.size
        (4, 4)
    """
    if isinstance(value, Image.Image):
        return value
    try:
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                value = value["bytes"]
            elif value.get("path"):
                value = value["path"]
            else:
                raise ImageDecodeError(f"{where}: empty image entry (no bytes and no path)")
        if isinstance(value, (bytes, bytearray)):
            img = Image.open(io.BytesIO(value))
        elif isinstance(value, str):
            img = Image.open(value)
        else:
            what = "no image (None)" if value is None else type(value).__name__
            raise ImageDecodeError(f"{where}: expected a PIL image, image bytes or a path, got {what}. "
                                   "Is this really the image column?")
        if load:
            img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageDecodeError(
            f"{where}: the image bytes could not be decoded ({err}). Remove or re-encode this "
            "image, e.g. with ds.filter(...), and try again; nothing was written."
        ) from err


def to_supported_mode(img: Image.Image, *, where: str = "") -> Image.Image:
    """Convert ``img`` to one of :data:`NATIVE_MODES`, or raise :class:`ImageModeError`.

    Example:
        >>> to_supported_mode(Image.new("P", (2, 2))).mode
        'RGB'
    """
    mode = supported_mode(img, where=where)
    return img if mode == img.mode else img.convert(mode)


def supported_mode(img: Image.Image, *, where: str = "") -> str:
    """The native mode ``img`` is protected in (see the module table), or raise.

    Reads only ``img.mode`` and ``img.info``, so it works on an unloaded image.
    """
    mode = img.mode
    if mode in NATIVE_MODES:
        return mode
    if mode == "P":
        return "RGBA" if "transparency" in img.info else "RGB"
    if mode in CONVERTED_MODES:
        return CONVERTED_MODES[mode]
    if mode.startswith("I") or mode == "F":
        raise ImageModeError(
            f"{where}: image mode {mode!r} (16/32-bit) cannot be protected without losing "
            "precision. Convert it to 8 bit yourself if that is acceptable, e.g. "
            "img.point(lambda v: v / 256).convert('L'), then protect the converted dataset."
        )
    raise ImageModeError(
        f"{where}: unsupported image mode {mode!r}. Convert the images to RGB, RGBA, L or LA first."
    )


def check_size(img: Image.Image, *, max_pixels: int = DEFAULT_MAX_PIXELS, where: str = "") -> None:
    """Refuse empty or larger-than-``max_pixels`` images with a clear message."""
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"{where}: image has an empty size {img.size}.")
    if w * h > max_pixels:
        raise ValueError(
            f"{where}: image of {w}x{h} = {w * h:,} pixels is larger than max_pixels="
            f"{max_pixels:,}. Raise max_pixels on the protector if you have the memory "
            "(about 16 bytes a pixel), or downscale the image first."
        )


def color_channels(mode: str) -> int:
    """Number of colour (non-alpha) channels of a native mode: 1 for L/LA, 3 for RGB/RGBA."""
    return 1 if mode in ("L", "LA") else 3


def pil_to_float(img: Image.Image) -> torch.Tensor:
    """RGB float tensor (3, H, W) in [0, 1] of a native-mode image; alpha dropped, grey replicated.

    Example:
        >>> pil_to_float(Image.new("L", (5, 3), 255)).shape
        torch.Size([3, 3, 5])
    """
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    color = arr[:, :, : color_channels(img.mode)]
    t = torch.from_numpy(np.array(color, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t


def luminance(delta: torch.Tensor) -> torch.Tensor:
    """Luminance (…, 1, H, W) of an RGB perturbation (…, 3, H, W); stays within its bound."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=delta.dtype, device=delta.device).view(3, 1, 1)
    return (delta * w).sum(dim=-3, keepdim=True)


def resize_delta(delta: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Resize a perturbation (3, h, w) to ``size_hw`` with a convex (bilinear) filter.

    Bilinear weights are non-negative and sum to one, so the result never leaves the
    L-inf ball the input lives in.
    """
    if tuple(delta.shape[-2:]) == tuple(size_hw):
        return delta
    return F.interpolate(
        delta.unsqueeze(0), size=size_hw, mode="bilinear", align_corners=False, antialias=True
    ).squeeze(0)


def crop_at(x: torch.Tensor, padding: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Zero-pad a batch (B, C, H, W) by ``padding`` and crop each image back to (H, W) at its own
    offset ``(top[i], left[i])`` in ``[0, 2 * padding]``. Differentiable in ``x``.

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 2, 2)
        >>> crop_at(x, 1, torch.tensor([0]), torch.tensor([0])).flatten().tolist()
        [0.0, 0.0, 0.0, 0.0]
    """
    batch, _, height, width = x.shape
    dev = x.device
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (top.to(dev)[:, None] + torch.arange(height, device=dev))[:, :, None]  # (B, H, 1)
    cols = (left.to(dev)[:, None] + torch.arange(width, device=dev))[:, None, :]  # (B, 1, W)
    index = torch.arange(batch, device=dev)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows, cols].permute(0, 3, 1, 2).contiguous()


def apply_delta(img: Image.Image, delta: torch.Tensor, epsilon: float) -> Image.Image:
    """Add a perturbation (3, h, w) to a native-mode image and return a new, PNG-bound image.

    The perturbation is resized to the image, reduced to luminance for L/LA images,
    clamped to ``[-epsilon, epsilon]``, added in uint8 space with rounding and clipping.
    Alpha is copied bit-exact. The returned image has no ``format`` so ``datasets``
    stores it as PNG (lossless), never as the source's JPEG.

    Example:
        >>> out = apply_delta(Image.new("RGB", (4, 4), (10, 20, 30)), torch.full((3, 2, 2), 4 / 255), 8 / 255)
        >>> out.getpixel((0, 0))
        (14, 24, 34)
    """
    if not bool(torch.isfinite(delta).all()):
        raise ValueError("the perturbation holds NaN or infinite values; those pixels would be left unprotected. "
                         "Refit the protector.")
    w, h = img.size
    d = resize_delta(delta.float(), (h, w)).clamp_(-epsilon, epsilon)
    n_color = color_channels(img.mode)
    if n_color == 1:
        d = luminance(d)
    arr = np.asarray(img)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[:, :, None]
    out = arr.astype(np.int16)  # room for the sum before clipping (uint8 would wrap)
    levels = torch.round(d * 255.0).to(torch.int16).permute(1, 2, 0).numpy()
    out[:, :, :n_color] += levels
    out = np.clip(out, 0, 255).astype(np.uint8)
    if squeeze:
        out = out[:, :, 0]
    return Image.fromarray(out, mode=img.mode)


def image_to_array(img: Image.Image) -> np.ndarray:
    """uint8 array (H, W, C) of a native-mode image, with C = 1, 2, 3 or 4."""
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_native(value: object, *, index: int, image_column: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                mode: str | None = None, where: str | None = None) -> Image.Image:
    """Decode one image, convert it to ``mode`` if given (an ``Image(mode=...)`` feature), then to a
    supported mode, and check its size. Errors name ``where`` (default: row ``index`` of the column)."""
    where = where or f"row {index} of column {image_column!r}"
    img = decode_image(value, where=where)
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    img = to_supported_mode(img, where=where)
    check_size(img, max_pixels=max_pixels, where=where)
    return img


def rgb_array(value: object, *, where: str = "") -> np.ndarray:
    """uint8 ``(H, W, 3)`` array of an image value (PIL, ``{"bytes", "path"}``, bytes or a path).

    Decoded and mode-checked as everywhere else (:func:`decode_image`, :func:`to_supported_mode`:
    16/32-bit images are refused with a fix); grey is repeated and alpha dropped.

    Example:
        >>> rgb_array(Image.new("L", (3, 2), 7)).shape
        (2, 3, 3)
    """
    img = to_supported_mode(decode_image(value, where=where), where=where)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def working_tensor(img: Image.Image, hw: tuple[int, int]) -> torch.Tensor:
    """uint8 RGB tensor (3, h, w) of a supported-mode image at the working resolution.

    The single conversion used both when fitting and when assigning at map time, so an
    image seen during fit gets exactly the features it had then.
    """
    t = pil_to_float(img)
    if tuple(t.shape[-2:]) != tuple(hw):
        t = F.interpolate(t.unsqueeze(0), size=hw, mode="bilinear", align_corners=False,
                          antialias=True).squeeze(0)
    return torch.round(t.clamp(0, 1) * 255).to(torch.uint8)


def content_key(img: Image.Image) -> bytes:
    """A 16-byte digest of an image's mode, size and pixels (not its encoding).

    Used to recognise, at map time, images the protector saw during ``fit``.
    """
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(f"{img.mode}|{img.size[0]}x{img.size[1]}|".encode())
    h.update(np.ascontiguousarray(np.asarray(img)).tobytes())
    return h.digest()


def perturb(x: torch.Tensor, delta: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
    """``clamp(x + delta, 0, 1)`` for images ``(B, 3, h, w)`` in [0, 1]; grey images get the luminance of delta.

    Example:
        >>> perturb(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.1), torch.tensor([False])).max().item()
        0.10000000149011612
    """
    lum = luminance(delta).expand_as(delta)
    mask = torch.as_tensor(grey, dtype=torch.bool, device=x.device).view(-1, 1, 1, 1)
    return (x + torch.where(mask, lum, delta)).clamp(0.0, 1.0)
