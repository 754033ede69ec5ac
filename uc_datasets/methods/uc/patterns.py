"""Model-free keyed textures: one bounded pattern per key (cluster or class), seeded.

A victim trained with random crops and flips sees every image shifted by a few pixels. A
pattern only works as a shortcut if the victim can still recognise it after the shift, so
every family here carries its key in a shift-robust statistic (docs/design.md §2):

* ``tile``: a random ``+-1`` tile of ``period x period`` pixels, repeated over the image
  (periodic, so any shift by a multiple of the period leaves it unchanged and any other shift
  turns it into another phase of the same tile);
* ``tile-code``: the same, but the tiles are chosen as a code (:func:`code_tiles`): greedily,
  so that no key's tile correlates strongly with any shift or flip of another key's;
* ``ar``: an autoregressive texture (Sandoval-Segura et al., NeurIPS 2022): each key has its
  own 3x3 causal AR coefficients; the field is generated pixel by pixel from a seeded start and
  scaled to ``[-1, 1]``; a stationary process, so a crop is another sample of it;
* ``wave``: a sum of a few smooth 2-D cosines per key (wavelengths of 8 to 32 pixels at the
  working size), pushed to the budget: low-frequency energy that JPEG-10 quantisation (which keeps
  the lowest DCT frequencies of every 8 x 8 block) and Gaussian smoothing leave mostly intact, and
  that a shift of a few pixels barely changes;
* ``block``: a coarse grid of ``+-1`` blocks of ``block x block`` pixels (Yu et al., KDD 2022),
  low-frequency, so JPEG and small shifts disturb it less.

Patterns are returned in units of epsilon (``[-1, 1]``), shape ``(n_keys, C, H, W)``. The
families of :mod:`uc_datasets.methods.uc.families` draw them, one key level at a time.

Example:
    >>> p = tile_patterns(3, (8, 8), period=4, seed=0)
    >>> p.shape, bool(p.abs().max() <= 1), bool(torch.equal(p[..., :4, :4], p[..., 4:, 4:]))
    (torch.Size([3, 1, 8, 8]), True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ar_patterns", "block_patterns", "code_tiles", "shift_similarity", "tile_patterns", "tile_to",
           "wave_patterns"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def tile_to(tile: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """Repeat a tile ``(..., p, q)`` to ``(..., h, w)`` (cropped at the bottom/right).

    Example:
        >>> tile_to(torch.tensor([[1.0, -1.0]]), (1, 5)).tolist()
        [[1.0, -1.0, 1.0, -1.0, 1.0]]
    """
    h, w = int(hw[0]), int(hw[1])
    p, q = tile.shape[-2:]
    reps = [1] * (tile.dim() - 2) + [-(-h // p), -(-w // q)]
    return tile.repeat(*reps)[..., :h, :w]


def tile_patterns(n_keys: int, hw: Sequence[int], *, period: int = 4, channels: int = 1,
                  seed: int = 0) -> torch.Tensor:
    """``n_keys`` random ``+-1`` tiles of ``period x period``, repeated to ``hw``.

    Example:
        >>> tile_patterns(2, (4, 6), period=2, seed=1).unique().tolist()
        [-1.0, 1.0]
    """
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    tiles = torch.randint(0, 2, (n_keys, channels, period, period), generator=_generator(seed)).float() * 2 - 1
    return tile_to(tiles, hw).contiguous()


def _variants(tiles: torch.Tensor) -> torch.Tensor:
    """Every cyclic shift and horizontal flip of each tile: ``(K, 2 * p * q, C * p * q)``."""
    k, c, p, q = tiles.shape
    out = []
    for t in (tiles, tiles.flip(-1)):
        for dy in range(p):
            for dx in range(q):
                out.append(t.roll((dy, dx), dims=(-2, -1)).reshape(k, -1))
    return torch.stack(out, 1)


def shift_similarity(tiles: torch.Tensor) -> torch.Tensor:
    """``(K, K)`` largest normalised correlation of tile ``i`` with any shift or flip of tile ``j``.

    What a crop + flip victim sees of a periodic tile is one of its cyclic shifts, flipped or
    not; two keys are confusable when some such view of one correlates with the other. The
    diagonal is 1.

    Example:
        >>> t = torch.tensor([[[[1.0, -1.0], [1.0, -1.0]]], [[[-1.0, 1.0], [-1.0, 1.0]]]])
        >>> shift_similarity(t)[0, 1].item()  # the second is a shift of the first
        1.0
    """
    flat = tiles.reshape(tiles.shape[0], -1).float()
    flat = flat / flat.norm(dim=1, keepdim=True).clamp(min=1e-12)
    views = _variants(tiles.float())
    views = views / views.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return torch.einsum("id,jvd->ijv", flat, views).amax(-1)


def code_tiles(n_keys: int, *, period: int = 4, channels: int = 1, seed: int = 0,
               candidates: int = 4096) -> torch.Tensor:
    """``n_keys`` ``+-1`` tiles chosen as a code: far apart under every cyclic shift and flip.

    Greedy max-min selection from ``candidates`` seeded random tiles (each candidate's best
    shift/flip correlation with the tiles already chosen must be as low as possible), so no
    two keys look alike to a crop + flip victim, unlike independent random draws (where some
    pairs correlate at 0.75-1.0 under a shift). Deterministic in ``seed``.

    Example:
        >>> t = code_tiles(4, period=4, seed=0)
        >>> t.shape, float(shift_similarity(t).fill_diagonal_(-1).max()) < 0.75
        (torch.Size([4, 1, 4, 4]), True)
    """
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    gen = _generator(seed)
    pool = torch.randint(0, 2, (max(candidates, n_keys), channels, period, period), generator=gen).float() * 2 - 1
    d = channels * period * period
    flat = pool.reshape(len(pool), -1) / d ** 0.5
    views = _variants(pool) / d ** 0.5  # (M, V, d)
    # self-similar candidates (a shift of themselves other than the identity) are kept: they are
    # still one key; what matters is the similarity between keys
    chosen = [0]
    worst = torch.einsum("md,vd->mv", flat, views[0]).amax(-1)  # (M,) best match with the chosen set
    worst = torch.maximum(worst, torch.einsum("vd,md->mv", views[0], flat).amax(-1))
    for _ in range(1, n_keys):
        score = worst.clone()
        score[chosen] = float("inf")
        nxt = int(torch.argmin(score))
        chosen.append(nxt)
        sim = torch.maximum(torch.einsum("md,vd->mv", flat, views[nxt]).amax(-1),
                            torch.einsum("vd,md->mv", views[nxt], flat).amax(-1))
        worst = torch.maximum(worst, sim)
    return pool[chosen].contiguous()


def wave_patterns(n_keys: int, hw: Sequence[int], *, channels: int = 1, seed: int = 0, n_waves: int = 3,
                  wavelengths: tuple[float, float] = (8.0, 32.0)) -> torch.Tensor:
    """``n_keys`` smooth textures in ``[-1, 1]``: ``n_waves`` random 2-D cosines each.

    Each wave has a random direction, a wavelength drawn uniformly in ``wavelengths`` (pixels)
    and a random phase; their sum is scaled by ``3 / max|sum|`` and clipped, so most pixels sit
    at the bound (the L-inf budget is spent) while the edges between signs stay smooth.

    Example:
        >>> w = wave_patterns(2, (16, 16), seed=0)
        >>> w.shape, bool(w.abs().max() <= 1), bool(torch.equal(w, wave_patterns(2, (16, 16), seed=0)))
        (torch.Size([2, 1, 16, 16]), True, True)
    """
    h, w = int(hw[0]), int(hw[1])
    gen = _generator(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    shape = (n_keys, channels, n_waves)
    angle = torch.rand(shape, generator=gen) * math.pi
    lo, hi = wavelengths
    length = lo + torch.rand(shape, generator=gen) * (hi - lo)
    phase = torch.rand(shape, generator=gen) * 2 * math.pi
    k = 2 * math.pi / length
    arg = (k * torch.cos(angle))[..., None, None] * xx + (k * torch.sin(angle))[..., None, None] * yy
    field = torch.cos(arg + phase[..., None, None]).sum(2)
    field = field / field.flatten(1).abs().amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    return (3 * field).clamp(-1.0, 1.0).contiguous()


def block_patterns(n_keys: int, hw: Sequence[int], *, block: int = 4, channels: int = 1,
                   seed: int = 0) -> torch.Tensor:
    """``n_keys`` random ``+-1`` grids of ``block x block`` pixel blocks covering ``hw``.

    Example:
        >>> b = block_patterns(1, (4, 4), block=2, seed=0)
        >>> bool((b[0, 0, :2, :2] == b[0, 0, 0, 0]).all())
        True
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    h, w = int(hw[0]), int(hw[1])
    gh, gw = -(-h // block), -(-w // block)
    grid = torch.randint(0, 2, (n_keys, channels, gh, gw), generator=_generator(seed)).float() * 2 - 1
    return grid.repeat_interleave(block, -2).repeat_interleave(block, -1)[..., :h, :w].contiguous()


def _ar_coefficients(rng: np.random.Generator) -> np.ndarray:
    """Causal 3x3 AR coefficients (the 4 already-generated neighbours), stable: |sum| < 1.

    The neighbours are left, up-left, up and up-right of the current pixel; coefficients are
    drawn at random and normalised so that their absolute values sum to 0.95, which keeps the
    process bounded while giving it strong, key-specific correlations.
    """
    c = rng.standard_normal(4)
    return 0.95 * c / np.abs(c).sum()


def ar_patterns(n_keys: int, hw: Sequence[int], *, channels: int = 1, seed: int = 0,
                noise: float = 0.1) -> torch.Tensor:
    """``n_keys`` autoregressive textures in ``[-1, 1]``, one coefficient set per key.

    Each key draws causal 3x3 AR coefficients, a random start (first row and column) and
    innovations with standard deviation ``noise``; the field is generated row by row, centred,
    scaled to a standard deviation of 2/3 and clipped to ``[-1, 1]`` (an L-inf budget wants
    energy, not a peak of 1 in a mostly small field). Reproducible from ``seed``.

    Example:
        >>> a = ar_patterns(2, (6, 6), seed=0)
        >>> a.shape, bool(torch.equal(a, ar_patterns(2, (6, 6), seed=0)))
        (torch.Size([2, 1, 6, 6]), True)
    """
    h, w = int(hw[0]), int(hw[1])
    rng = np.random.default_rng(int(seed))
    coef = np.stack([_ar_coefficients(rng) for _ in range(n_keys)])[:, None, :]  # (K, 1, 4)
    f = rng.standard_normal((n_keys, channels, h + 1, w + 2))  # the start: first row, both edge columns
    innovations = rng.standard_normal((n_keys, channels, h + 1, w + 2)) * noise
    for i in range(1, h + 1):  # vectorised over keys and channels
        for j in range(1, w + 1):
            f[:, :, i, j] = (coef[..., 0] * f[:, :, i, j - 1] + coef[..., 1] * f[:, :, i - 1, j - 1]
                             + coef[..., 2] * f[:, :, i - 1, j] + coef[..., 3] * f[:, :, i - 1, j + 1]
                             + innovations[:, :, i, j])
    out = f
    field = torch.from_numpy(out[:, :, 1:, 1 : w + 1]).float()
    field = field - field.flatten(1).mean(1).view(-1, 1, 1, 1)
    scale = 1.5 * field.flatten(1).std(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    return (field / scale).clamp(-1.0, 1.0).contiguous()
