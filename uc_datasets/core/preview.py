"""A PNG grid for people: clean, perturbation (amplified), protected and a 4x zoom, one column an image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from uc_datasets.core.imaging import to_supported_mode

#: Magnification of the zoom row: at thumbnail size the noise is invisible, at 4x native pixels it is not.
ZOOM = 4


def preview_grid(clean: Sequence[Image.Image], protected: Sequence[Image.Image], epsilon: float, *,
                 cell: int = 112, pad: int = 4) -> Image.Image:
    """Four rows: clean images, their perturbation amplified to the full range, protected images,
    and a :data:`ZOOM` x crop of the centre of each image, clean (left) and protected (right).

    The second row shows ``0.5 + (protected - clean) / (2 * epsilon)``: mid-grey is no change.

    Example:
        >>> g = preview_grid([Image.new("L", (8, 8))], [Image.new("L", (8, 8), 4)], 8 / 255, cell=16)
        >>> g.size
        (24, 84)
    """
    if len(clean) != len(protected) or not clean:
        raise ValueError("preview_grid needs the same, non-zero number of clean and protected images")
    n = len(clean)
    grid = Image.new("RGB", (pad + n * (cell + pad), pad + 4 * (cell + pad)), (255, 255, 255))
    for j, (a, b) in enumerate(zip(clean, protected)):
        a, b = to_supported_mode(a).convert("RGB"), to_supported_mode(b).convert("RGB")
        diff = np.asarray(b, np.float32) - np.asarray(a, np.float32)
        amp = np.clip(127.5 + diff * (127.5 / max(epsilon * 255, 1e-9)), 0, 255).astype(np.uint8)
        x = pad + j * (cell + pad)
        for r, img in enumerate((a, Image.fromarray(amp), b)):
            scale = cell / max(img.size)
            size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
            resample = Image.NEAREST if scale >= 1 else Image.BILINEAR
            grid.paste(img.resize(size, resample), (x, pad + r * (cell + pad)))
        half = max(1, (cell - pad) // 2)
        for k, zoom in enumerate(zoomed_crops(a, b, half)):
            grid.paste(zoom, (x + k * (half + pad), pad + 3 * (cell + pad)))
    return grid


def zoomed_crops(clean: Image.Image, protected: Image.Image, size: int) -> tuple[Image.Image, Image.Image]:
    """The same central region of both images, magnified :data:`ZOOM` times (nearest neighbour) to at
    most ``size`` pixels a side.

    Example:
        >>> a, b = zoomed_crops(Image.new("RGB", (40, 30)), Image.new("RGB", (40, 30)), 52)
        >>> a.size
        (52, 52)
    """
    w, h = clean.size
    cw, ch = min(w, max(1, size // ZOOM)), min(h, max(1, size // ZOOM))
    box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
    return tuple(img.crop(box).resize((cw * ZOOM, ch * ZOOM), Image.NEAREST) for img in (clean, protected))


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
