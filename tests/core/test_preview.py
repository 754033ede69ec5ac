"""The preview grid: three thumbnail rows and a 4x zoom row of clean / protected side by side."""

import numpy as np
from PIL import Image

from uc_datasets.core.preview import ZOOM, preview_grid


def test_the_zoom_row_shows_native_pixels_four_times_larger_clean_left_protected_right():
    rng = np.random.default_rng(0)
    clean = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))  # thumbnails shrink it
    prot = Image.fromarray(np.clip(np.asarray(clean, np.int16) + 8, 0, 255).astype(np.uint8))
    cell, pad = 112, 4
    grid = np.asarray(preview_grid([clean], [prot], 8 / 255, cell=cell, pad=pad))
    assert grid.shape[0] == pad + 4 * (cell + pad)
    half = (cell - pad) // 2
    crop = half // ZOOM  # native pixels shown
    y0, x0 = pad + 3 * (cell + pad), pad
    for k, img in enumerate((clean, prot)):
        top, left = (300 - crop) // 2, (400 - crop) // 2  # the centre
        arr = np.asarray(img)[top:top + crop, left:left + crop]
        expected = arr.repeat(ZOOM, 0).repeat(ZOOM, 1)
        x = x0 + k * (half + pad)
        assert np.array_equal(grid[y0:y0 + crop * ZOOM, x:x + crop * ZOOM], expected)


def test_tiny_images_are_zoomed_whole():
    grid = preview_grid([Image.new("L", (3, 2), 10)], [Image.new("L", (3, 2), 20)], 10 / 255, cell=40, pad=2)
    zoom = np.asarray(grid)[2 + 3 * 42: 2 + 3 * 42 + 2 * ZOOM, 2: 2 + 3 * ZOOM]
    assert zoom.shape[:2] == (8, 12) and (zoom == 10).all()
