"""The visual cost of a protection: PSNR (dB) and SSIM of protected against clean, streamed.

Our own short implementation (numpy + torch, no extra dependency, nothing downloaded):

- PSNR per image: ``10 * log10(255**2 / MSE)`` over the image's values.
- SSIM per image: Wang et al. (2004), a Gaussian window (11 x 11, sigma 1.5, ``valid``
  positions only, as in the authors' ``ssim_index.m``), K1 = 0.01, K2 = 0.03, data range
  255, the mean of the SSIM map. An image smaller than the window uses the largest odd window
  that fits, with sigma scaled by the same factor (a 1-pixel image compares its pixel values).

Both are computed over the luminance (``0.299 R + 0.587 G + 0.114 B``, unrounded; the grey
channel of an ``L``/``LA`` image) and, for colour images, over ``R``, ``G`` and ``B`` too;
alpha is ignored. :class:`VisualCostStream` keeps, per metric and channel, the count, the sum,
the worst image and a fixed histogram for the 5th percentile, so its memory does not grow with
the number of images. Identical images (infinite PSNR) are counted apart and left out of the
PSNR statistics.

Example:
    >>> import torch
    >>> clean = torch.full((2, 1, 16, 16), 128, dtype=torch.uint8)
    >>> sign = (torch.arange(256).reshape(1, 1, 16, 16) % 2 * 2 - 1).to(torch.int16)
    >>> protected = (clean.to(torch.int16) + 16 * sign).to(torch.uint8)
    >>> round(visual_cost(clean, protected)["psnr"]["luminance"]["mean"], 2)
    24.05
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["VisualCostStream", "luminance", "psnr", "ssim", "visual_cost"]

DATA_RANGE = 255.0
WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
LUMA = (0.299, 0.587, 0.114)  # PIL's L conversion (ITU-R 601-2)
#: Histogram ranges and bin counts for the streamed 5th percentile (resolution 0.01 dB / 1e-4).
_RANGES = {"psnr": (0.0, 150.0, 15000), "ssim": (-1.0, 1.0, 20000)}


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Unrounded luminance of an ``(H, W, 3)`` array, float64.

    Example:
        >>> luminance(np.full((1, 1, 3), 100, np.uint8)).item()
        100.0
    """
    rgb = np.asarray(rgb, np.float64)
    return rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]


def psnr(clean: np.ndarray, protected: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """PSNR in dB of two same-shape arrays (``inf`` when they are identical).

    Example:
        >>> round(psnr(np.full((4, 4), 128), np.full((4, 4), 136)), 2)  # a uniform change of 8 levels
        30.07
    """
    diff = np.asarray(clean, np.float64) - np.asarray(protected, np.float64)
    mse = float(np.mean(diff * diff)) if diff.size else 0.0
    return math.inf if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


def _window(h: int, w: int) -> tuple[int, float]:
    """The Gaussian window size and sigma for an ``h x w`` image (shrunk, odd, below 11 pixels)."""
    size = min(WINDOW, h, w)
    size -= 1 - size % 2  # odd
    return size, SIGMA * size / WINDOW


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(clean: np.ndarray, protected: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Mean SSIM (Wang et al. 2004) of two same-shape 2-D arrays, Gaussian window 11 / sigma 1.5.

    Example:
        >>> ssim(np.full((16, 16), 100.0), np.full((16, 16), 100.0))
        1.0
    """
    x = torch.as_tensor(np.asarray(clean, np.float64))[None, None]
    y = torch.as_tensor(np.asarray(protected, np.float64))[None, None]
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim compares two 2-D arrays of the same shape, got {tuple(clean.shape)} and "
                         f"{tuple(protected.shape)}")
    size, sigma = _window(x.shape[-2], x.shape[-1])
    g = _gaussian(size, sigma)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(torch.nn.functional.conv2d(t, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    smap = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(smap.mean())


def _channels(arr: np.ndarray) -> dict[str, np.ndarray]:
    """``{"luminance": ...}`` for grey (+alpha) ``(H, W, C)`` arrays, plus ``R``, ``G``, ``B`` for colour."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] in (1, 2):
        return {"luminance": arr[:, :, 0]}
    return {"luminance": luminance(arr[:, :, :3]), "R": arr[:, :, 0], "G": arr[:, :, 1], "B": arr[:, :, 2]}


@dataclass
class _Running:
    """Count, sum, worst value (and image) and a fixed histogram of one metric on one channel."""

    metric: str
    count: int = 0
    total: float = 0.0
    worst: float = math.inf
    worst_index: int | None = None
    hist: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.hist is None:
            self.hist = np.zeros(_RANGES[self.metric][2], np.int64)

    def add(self, value: float, index: int) -> None:
        lo, hi, bins = _RANGES[self.metric]
        self.count += 1
        self.total += value
        if value < self.worst:
            self.worst, self.worst_index = value, index
        self.hist[min(bins - 1, max(0, int((value - lo) / (hi - lo) * bins)))] += 1

    def percentile(self, q: float) -> float:
        """The nearest-rank ``q``-th percentile, to the histogram's resolution (bin centre)."""
        lo, hi, bins = _RANGES[self.metric]
        rank = max(1, math.ceil(q / 100 * self.count))
        b = int(np.searchsorted(np.cumsum(self.hist), rank))
        return max(self.worst, lo + (b + 0.5) * (hi - lo) / bins)

    def to_dict(self) -> dict:
        if not self.count:
            return {"mean": None, "p5": None, "worst": None, "worst_index": None, "n_images": 0}
        return {"mean": self.total / self.count, "p5": self.percentile(5), "worst": self.worst,
                "worst_index": self.worst_index, "n_images": self.count}


class VisualCostStream:
    """PSNR and SSIM statistics of image pairs added one at a time, in memory flat in N.

    Example:
        >>> s = VisualCostStream()
        >>> s.add(np.full((8, 8, 1), 100, np.uint8), np.full((8, 8, 1), 108, np.uint8), index=0)
        >>> round(s.result()["psnr"]["luminance"]["mean"], 2), s.result()["identical"]
        (30.07, 0)
    """

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], _Running] = {}
        self.identical = 0

    def add(self, clean: np.ndarray, protected: np.ndarray, index: int) -> None:
        """Add one pair of ``(H, W, C)`` uint8 arrays (same shape; C = 1..4) as image ``index``."""
        a, b = np.asarray(clean), np.asarray(protected)
        if a.shape != b.shape:
            raise ValueError(f"image {index}: clean {a.shape} and protected {b.shape} differ in shape")
        if np.array_equal(a, b):
            self.identical += 1
            return
        ca, cb = _channels(a), _channels(b)
        for name in ca:
            x, y = ca[name], cb[name]
            for metric, fn in (("psnr", psnr), ("ssim", ssim)):
                value = fn(x, y)
                if math.isfinite(value):  # a channel that did not change has infinite PSNR
                    self._stats.setdefault((metric, name), _Running(metric)).add(value, index)

    def result(self) -> dict:
        """``{"psnr": {channel: {mean, p5, worst, worst_index, n_images}}, "ssim": {...}, "identical": n}``."""
        out: dict = {"psnr": {}, "ssim": {}}
        for (metric, name), stats in sorted(self._stats.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))):
            out[metric][name] = stats.to_dict()
        out["identical"] = self.identical
        return out


def _order(channel: str) -> int:
    return ("luminance", "R", "G", "B").index(channel)


def visual_cost(clean: torch.Tensor | np.ndarray | Iterable, protected: torch.Tensor | np.ndarray | Iterable) -> dict:
    """PSNR / SSIM statistics of ``protected`` against ``clean``: ``(N, C, H, W)`` uint8 tensors or
    arrays, or two iterables of ``(C, H, W)`` images (streamed, so a generator keeps memory flat).
    C = 1 (grey) or 3 (RGB). Returns :meth:`VisualCostStream.result`.

    Example:
        >>> x = torch.full((1, 3, 12, 12), 100, dtype=torch.uint8)
        >>> visual_cost(x, x + 4)["ssim"]["luminance"]["mean"] < 1
        True
    """
    stream = VisualCostStream()
    n = 0
    for i, (a, b) in enumerate(zip(clean, protected, strict=True)):
        a, b = (np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t) for t in (a, b))
        if a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim != 3:
            raise ValueError(f"visual_cost takes uint8 images of shape (C, H, W); image {i} is {a.dtype} "
                             f"{a.shape} / {b.dtype} {b.shape}. Convert with (x * 255).round().to(torch.uint8).")
        stream.add(a.transpose(1, 2, 0), b.transpose(1, 2, 0), index=i)
        n += 1
    if not n:
        raise ValueError("visual_cost needs at least one pair of images")
    return stream.result()
