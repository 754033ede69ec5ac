"""A PNG grid for people: clean, perturbation (amplified) and protected, one column an image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..imaging import to_supported_mode


def preview_grid(clean: Sequence[Image.Image], protected: Sequence[Image.Image], epsilon: float, *,
                 cell: int = 112, pad: int = 4) -> Image.Image:
    """Three rows: clean images, their perturbation amplified to the full range, protected images.

    The middle row shows ``0.5 + (protected - clean) / (2 * epsilon)``: mid-grey is no change.

    Example:
        >>> g = preview_grid([Image.new("L", (8, 8))], [Image.new("L", (8, 8), 4)], 8 / 255, cell=16)
        >>> g.size
        (24, 64)
    """
    if len(clean) != len(protected) or not clean:
        raise ValueError("preview_grid needs the same, non-zero number of clean and protected images")
    n = len(clean)
    grid = Image.new("RGB", (pad + n * (cell + pad), pad + 3 * (cell + pad)), (255, 255, 255))
    for j, (a, b) in enumerate(zip(clean, protected)):
        a, b = to_supported_mode(a).convert("RGB"), to_supported_mode(b).convert("RGB")
        diff = np.asarray(b, np.float32) - np.asarray(a, np.float32)
        amp = np.clip(127.5 + diff * (127.5 / max(epsilon * 255, 1e-9)), 0, 255).astype(np.uint8)
        for r, img in enumerate((a, Image.fromarray(amp), b)):
            scale = cell / max(img.size)
            size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
            resample = Image.NEAREST if scale >= 1 else Image.BILINEAR
            grid.paste(img.resize(size, resample), (pad + j * (cell + pad), pad + r * (cell + pad)))
    return grid


def save_preview(clean, protected, epsilon: float, path: str | Path, *, image_column: str = "image",
                 n: int = 8) -> Path:
    """Save :func:`preview_grid` of the first ``n`` rows of two aligned datasets as PNG."""
    k = min(n, len(clean))
    grid = preview_grid([clean[i][image_column] for i in range(k)], [protected[i][image_column] for i in range(k)],
                        epsilon)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, format="PNG")
    return path
