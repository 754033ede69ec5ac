"""Training-time defences against unlearnable data, as small functions on batches.

Every function works on float images in ``[0, 1]`` of shape ``(B, C, H, W)`` and, where
labels are involved, on soft targets of shape ``(B, K)`` (one-hot rows for hard labels).
Random choices can be passed explicitly (``lam``, ``perm``, ``box``, ``centers``), which makes
each function exact and testable; otherwise they are drawn from torch's global RNG.

The paper's four augmentations (Table 3): :func:`mixup`, :func:`cutmix`, :func:`cutout` and
:func:`gaussian_smoothing` (default kernel 3x3, sigma 1.0; the paper does not state its own).
Image-shortcut squeezing (Liu et al., ICML 2023): :func:`jpeg_compress` at quality 10 and
:func:`grayscale`. Adversarial training (Madry et al.): :func:`pgd_attack`, L-inf, eps 8/255,
step 2/255, 10 steps by default. Orthogonal projection (Sandoval-Segura et al., NeurIPS 2023):
:func:`orthogonal_projection` fits a linear classifier on the training set and projects its
weight directions out of every training image, which removes class-wise linear shortcuts.

:func:`get_defense` wraps them into a :class:`Defense` that the victim training loop calls.

Example:
    >>> import torch
    >>> x = torch.zeros(2, 3, 4, 4); y = torch.eye(2)
    >>> xm, ym = mixup(x, y, lam=0.5, perm=torch.tensor([1, 0]))
    >>> ym.tolist()
    [[0.5, 0.5], [0.5, 0.5]]
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from uc_datasets.core.augment import check_images, grayscale

logger = logging.getLogger(__name__)

__all__ = ["DEFENSES", "Defense", "cutmix", "cutout", "gaussian_kernel1d", "gaussian_smoothing", "get_defense", "jpeg_compress", "linear_directions", "mixup", "orthogonal_projection", "parse_defense_spec", "pgd_attack", "project_out"]


def _check_targets(x: torch.Tensor, y: torch.Tensor) -> None:
    if y.dim() != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must be soft targets of shape (B, K) with B = {x.shape[0]}; got {tuple(y.shape)}. "
            "Turn integer labels into one-hot rows with torch.nn.functional.one_hot(y, K).float()."
        )


def _permutation(batch: int, perm: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if perm is None:
        return torch.randperm(batch).to(device)
    perm = torch.as_tensor(perm, device=device, dtype=torch.long)
    if perm.shape != (batch,) or not torch.equal(perm.sort().values, torch.arange(batch, device=device)):
        raise ValueError(f"perm must be a permutation of range({batch}); got {perm.tolist()}.")
    return perm


def _beta(alpha: float) -> float:
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0; got {alpha}.")
    return float(torch.distributions.Beta(alpha, alpha).sample())


def mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float = 1.0,
    *,
    lam: float | None = None,
    perm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al., 2018): convex combination of each sample with a shuffled partner.

    ``x' = lam * x + (1 - lam) * x[perm]`` and the same for ``y``; ``lam ~ Beta(alpha, alpha)``.

    Args:
        x: images ``(B, C, H, W)`` in [0, 1].
        y: soft targets ``(B, K)``.
        alpha: Beta parameter.
        lam: fixed mixing weight (drawn when None).
        perm: fixed partner permutation (drawn when None).

    Example:
        >>> x = torch.stack([torch.zeros(1, 1, 1), torch.ones(1, 1, 1)])
        >>> mixup(x, torch.eye(2), lam=0.25, perm=torch.tensor([1, 0]))[0].flatten().tolist()
        [0.75, 0.25]
    """
    check_images(x)
    _check_targets(x, y)
    lam = _beta(alpha) if lam is None else float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1]; got {lam}.")
    perm = _permutation(x.shape[0], perm, x.device)
    return lam * x + (1.0 - lam) * x[perm], lam * y + (1.0 - lam) * y[perm]


def cutmix(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float = 1.0,
    *,
    box: tuple[int, int, int, int] | None = None,
    perm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al., 2019): paste a box from a shuffled partner; mix labels by area.

    The box ``(top, left, bottom, right)`` (bottom/right exclusive) is drawn as in the paper:
    ``lam ~ Beta(alpha, alpha)``, side ratio ``sqrt(1 - lam)``, uniform centre, clipped to the
    image. The label weight is the kept area: ``1 - box_area / (H * W)``.

    Example:
        >>> x = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
        >>> xc, yc = cutmix(x, torch.eye(2), box=(0, 0, 1, 1), perm=torch.tensor([1, 0]))
        >>> yc[0].tolist()
        [0.75, 0.25]
    """
    check_images(x)
    _check_targets(x, y)
    height, width = x.shape[-2:]
    if box is None:
        lam = _beta(alpha)
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(torch.randint(height, (1,))), int(torch.randint(width, (1,)))
        box = (
            max(cy - cut_h // 2, 0),
            max(cx - cut_w // 2, 0),
            min(cy + cut_h // 2, height),
            min(cx + cut_w // 2, width),
        )
    top, left, bottom, right = (int(v) for v in box)
    if not (0 <= top <= bottom <= height and 0 <= left <= right <= width):
        raise ValueError(f"box {box} must satisfy 0 <= top <= bottom <= {height} and 0 <= left <= right <= {width}.")
    perm = _permutation(x.shape[0], perm, x.device)
    out = x.clone()
    out[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
    return out, lam * y + (1.0 - lam) * y[perm]


def cutout(
    x: torch.Tensor,
    size: int = 8,
    *,
    centers: torch.Tensor | None = None,
    fill: float = 0.0,
) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017): fill one ``size x size`` square per image.

    The square is centred at a uniform pixel ``(cy, cx)`` and clipped at the border, so it may
    be partly outside the image, as in the original code. ``size`` is the full side length.

    Args:
        x: images ``(B, C, H, W)``.
        size: side of the square in pixels.
        centers: fixed ``(B, 2)`` centres ``(cy, cx)`` (drawn when None).
        fill: value written into the square.

    Example:
        >>> cutout(torch.ones(1, 1, 3, 3), 1, centers=torch.tensor([[1, 1]]))[0, 0].tolist()
        [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    """
    check_images(x)
    if size < 1:
        raise ValueError(f"cutout size must be >= 1 pixel; got {size}.")
    batch, _, height, width = x.shape
    if centers is None:
        centers = torch.stack([torch.randint(height, (batch,)), torch.randint(width, (batch,))], dim=1)
    centers = torch.as_tensor(centers, dtype=torch.long, device=x.device)
    if centers.shape != (batch, 2):
        raise ValueError(f"centers must have shape ({batch}, 2); got {tuple(centers.shape)}.")
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    # A square of side `size` centred at c covers [c - size // 2, c - size // 2 + size).
    top = (centers[:, 0] - size // 2)[:, None]
    left = (centers[:, 1] - size // 2)[:, None]
    in_rows = (rows[None] >= top) & (rows[None] < top + size)  # (B, H)
    in_cols = (cols[None] >= left) & (cols[None] < left + size)  # (B, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
    return x.masked_fill(mask, fill)


def gaussian_kernel1d(kernel_size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, centred: ``exp(-t^2 / (2 sigma^2))``, ``t = -(k//2)..k//2``.

    Example:
        >>> [round(v, 4) for v in gaussian_kernel1d(3, 1.0).tolist()]
        [0.2741, 0.4519, 0.2741]
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer; got {kernel_size}.")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}.")
    t = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    taps = torch.exp(-(t**2) / (2.0 * sigma**2))
    return (taps / taps.sum()).float()


def gaussian_smoothing(x: torch.Tensor, kernel_size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur, separable, per channel, with replicate padding (output size = input size).

    Defaults: a 3x3 kernel with sigma 1.0 (taps 0.2741, 0.4519, 0.2741 per axis).

    Example:
        >>> bool(torch.equal(gaussian_smoothing(torch.full((1, 3, 4, 4), 0.5)), torch.full((1, 3, 4, 4), 0.5)))
        True
    """
    check_images(x)
    taps = gaussian_kernel1d(kernel_size, sigma).to(device=x.device, dtype=x.dtype)
    channels = x.shape[1]
    pad = kernel_size // 2
    out = F.pad(x, (pad, pad, pad, pad), mode="replicate") if pad else x
    out = F.conv2d(out, taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.conv2d(out, taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return out


def jpeg_compress(x: torch.Tensor, quality: int = 10) -> torch.Tensor:
    """JPEG squeezing: encode and decode each image with PIL at ``quality`` (default 10).

    Images are rounded to 8 bits first; the output is on the 8-bit grid (``k / 255``).
    1-channel images are coded as greyscale JPEG, 3-channel as RGB (4:2:0, PIL's default).

    Example:
        >>> jpeg_compress(torch.full((1, 3, 8, 8), 200 / 255)).mul(255).round().unique().tolist()
        [198.0]
    """
    check_images(x)
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in [1, 95]; got {quality}.")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"jpeg_compress needs 1 or 3 channels; got {x.shape[1]}.")
    arrays = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for array in arrays:
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out = np.asarray(Image.open(buffer).convert(image.mode))
        decoded.append(out[..., None] if out.ndim == 2 else out)
    result = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return result.to(device=x.device, dtype=x.dtype) / 255.0


def pgd_attack(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
) -> torch.Tensor:
    """L-inf PGD (Madry et al., 2018) that maximises cross-entropy; for adversarial training.

    ``x_{t+1} = clip_[0,1](clip_{x +- eps}(x_t + alpha * sign(grad)))``, starting from ``x`` or,
    with ``random_start``, from ``x + U(-eps, eps)``. ``y`` may be class indices ``(B,)`` or soft
    targets ``(B, K)``. The model's parameters get no gradient; call it in the mode you want.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
        >>> x_adv = pgd_attack(model, torch.rand(4, 3, 1, 1), torch.zeros(4, dtype=torch.long), eps=0.1)
        >>> x_adv.shape
        torch.Size([4, 3, 1, 1])
    """
    check_images(x)
    if eps < 0 or alpha <= 0 or steps < 1:
        raise ValueError(f"PGD needs eps >= 0, alpha > 0 and steps >= 1; got eps={eps}, alpha={alpha}, steps={steps}.")
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        x_adv = (x_adv + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def linear_directions(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int | None = None,
    *,
    epochs: int = 20,
    batch_size: int = 1024,
    lr: float = 0.1,
    min_steps: int = 1000,
    seed: int = 0,
) -> torch.Tensor:
    """The weight rows ``(K, C*H*W)`` of a bias-free linear classifier fit on ``x`` -> ``y``.

    As in the reference code of Sandoval-Segura et al.: the flattened, unnormalised images,
    no bias, SGD at ``lr`` in batches of 1024 for 20 epochs, the rate divided by 10 at half
    and at three quarters of the epochs. On small sets (the reference fits 50,000 images,
    about 1,000 steps) the epochs are raised to give at least ``min_steps`` steps: with 20
    steps the weights held only 60% of a planted pattern's norm on our synthetic test set.
    Seeded, so the same data gives the same directions.

    Example:
        >>> x = torch.rand(8, 1, 2, 2); y = torch.arange(8) % 2
        >>> linear_directions(x, y, epochs=2).shape
        torch.Size([2, 4])
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"need as many labels as images (and at least one); got {x.shape[0]} and {y.shape[0]}.")
    y = torch.as_tensor(y, dtype=torch.long, device=x.device)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    flat = x.reshape(x.shape[0], -1).float()
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(flat.shape[1], k, bias=False).to(flat.device)
    with torch.no_grad():
        bound = 1 / math.sqrt(flat.shape[1])
        linear.weight.copy_((torch.rand(linear.weight.shape, generator=generator) * 2 - 1) * bound)
    steps_per_epoch = math.ceil(flat.shape[0] / batch_size)
    epochs = max(1, int(epochs), math.ceil(min_steps / steps_per_epoch))
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(epochs * 0.5), int(epochs * 0.75)])
    loss = torch.zeros(())
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(flat.shape[0], generator=generator).to(flat.device)
            for start in range(0, flat.shape[0], batch_size):
                idx = order[start : start + batch_size]
                loss = F.cross_entropy(linear(flat[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()
    logger.debug("Linear model for orthogonal projection: last batch loss %.4f", float(loss.detach()))
    return linear.weight.detach()


def orthogonal_projection(
    x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None, *, epochs: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project the directions a linear classifier uses out of every image.

    Sandoval-Segura et al. ("What can we learn from unlearnable datasets?", NeurIPS 2023): a
    class-wise shortcut is linearly separable, so a linear model fit on the (protected)
    training set puts its weights on it; removing the span of those ``K`` weight vectors
    (``Q``, an orthonormal basis from a QR decomposition) removes the shortcut and only ``K``
    of the ``C*H*W`` pixel directions. One change from the reference code: the images are
    centred on the mean training image ``mu`` first, and ``x' = x - Q Q^T (x - mu)``, so the
    projection keeps the average image (without it, on our synthetic test set the projected
    clean training images lost their mean brightness while the test images kept it, and a
    clean victim fell from 100% to 21%). Returns the projected images (float; they may leave
    [0, 1]), ``Q`` ``(C*H*W, K)`` and ``mu`` ``(C*H*W,)``.

    Example:
        >>> x = torch.rand(8, 1, 2, 2); y = torch.arange(8) % 2
        >>> projected, basis, mean = orthogonal_projection(x, y, epochs=2)
        >>> projected.shape, basis.shape, mean.shape
        (torch.Size([8, 1, 2, 2]), torch.Size([4, 2]), torch.Size([4]))
    """
    mean = x.reshape(x.shape[0], -1).float().mean(dim=0)
    centred = x.reshape(x.shape[0], -1).float() - mean
    weights = linear_directions(centred, y, num_classes, epochs=epochs, seed=seed)
    basis, _ = torch.linalg.qr(weights.T.double())
    basis = basis.to(torch.float32)
    return project_out(x, basis, mean), basis, mean


def project_out(x: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """``x - Q Q^T (x - mu)`` for flattened images, an orthonormal ``Q`` ``(C*H*W, K)`` and the
    centre ``mu`` (zero when not given).

    Example:
        >>> q = torch.tensor([[1.0], [0.0]])
        >>> project_out(torch.tensor([[[[3.0, 4.0]]]]), q).flatten().tolist()
        [0.0, 4.0]
    """
    flat = x.reshape(x.shape[0], -1).float()
    basis = basis.to(flat.device)
    centred = flat if mean is None else flat - mean.to(flat.device)
    return (flat - (centred @ basis) @ basis.T).reshape(x.shape)


@dataclass
class Defense:
    """A training-time defence, as the victim training loop sees it (ART-style narrow contract).

    Hooks (each defaults to identity):

    * ``train_images(x) -> x``: once, on the whole training set (float, [0, 1]).
    * ``train_set(x, y) -> x``: once, on the whole training set with its integer labels; the
      result stays float (it may leave [0, 1]).
    * ``test_images(x) -> x``: on test images before inference.
    * ``batch(x, y) -> (x, y)``: on every augmented training batch; ``y`` soft targets.
    * ``adversarial``: when set, ``(model, x, y) -> x_adv`` replaces each batch (PGD training).

    Example:
        >>> get_defense("grayscale").name
        'grayscale'
    """

    name: str
    train_images: Callable[[torch.Tensor], torch.Tensor] | None = None
    test_images: Callable[[torch.Tensor], torch.Tensor] | None = None
    train_set: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    batch: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    adversarial: Callable[..., torch.Tensor] | None = None
    params: dict = field(default_factory=dict)

    def apply_train_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.train_images(x) if self.train_images else x

    def apply_test_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.test_images(x) if self.test_images else x

    def apply_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch(x, y) if self.batch else (x, y)


def _make_none() -> Defense:
    return Defense("none")


def _make_mixup(alpha: float = 1.0) -> Defense:
    return Defense("mixup", batch=lambda x, y: mixup(x, y, alpha), params={"alpha": alpha})


def _make_cutmix(alpha: float = 1.0) -> Defense:
    return Defense("cutmix", batch=lambda x, y: cutmix(x, y, alpha), params={"alpha": alpha})


def _make_cutout(size: float = 0.5) -> Defense:
    """``size`` < 1 is a fraction of the image side (0.5: 16 px on 32 px images); >= 1 is pixels."""

    def batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = int(size) if size >= 1 else max(1, round(size * x.shape[-1]))
        return cutout(x, pixels), y

    return Defense("cutout", batch=batch, params={"size": size})


def _make_gaussian(kernel_size: int = 3, sigma: float = 1.0) -> Defense:
    kernel_size = int(kernel_size)
    return Defense(
        "gaussian",
        batch=lambda x, y: (gaussian_smoothing(x, kernel_size, sigma), y),
        params={"kernel_size": kernel_size, "sigma": sigma},
    )


def _make_jpeg(quality: int = 10) -> Defense:
    quality = int(quality)
    return Defense("jpeg", train_images=lambda x: jpeg_compress(x, quality), params={"quality": quality})


def _make_grayscale() -> Defense:
    # As in ISS, test images are converted too, so the victim is not tested off-distribution.
    return Defense("grayscale", train_images=grayscale, test_images=grayscale)


def _make_pgd(eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10) -> Defense:
    steps = int(steps)

    def adversarial(model: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd_attack(model, x, y, eps=eps, alpha=alpha, steps=steps)

    return Defense("pgd", adversarial=adversarial, params={"eps": eps, "alpha": alpha, "steps": steps})


def _make_orthogonal(epochs: int = 20, test: float = 0.0) -> Defense:
    """``test=1`` also projects the test images (with the basis fit on the training set); by
    default, as in Sandoval-Segura et al., the victim is tested on the clean test images."""
    epochs = int(epochs)
    fitted: dict[str, torch.Tensor] = {}

    def train_set(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        projected, fitted["basis"], fitted["mean"] = orthogonal_projection(x, y, epochs=epochs)
        return projected

    def test_images(x: torch.Tensor) -> torch.Tensor:
        if "basis" not in fitted:
            raise RuntimeError("orthogonal projection: the test images come before the training set was fit.")
        return project_out(x, fitted["basis"], fitted["mean"])

    return Defense("orthogonal", train_set=train_set, test_images=test_images if test else None,
                   params={"epochs": epochs, "test": float(test)})


DEFENSES: dict[str, Callable[..., Defense]] = {
    "none": _make_none,
    "mixup": _make_mixup,
    "cutmix": _make_cutmix,
    "cutout": _make_cutout,
    "gaussian": _make_gaussian,
    "jpeg": _make_jpeg,
    "grayscale": _make_grayscale,
    "pgd": _make_pgd,
    "orthogonal": _make_orthogonal,
}


def _parse_number(text: str) -> float:
    if "/" in text:
        numerator, denominator = text.split("/", 1)
        return float(numerator) / float(denominator)
    return float(text)


def parse_defense_spec(spec: str) -> tuple[str, dict[str, float]]:
    """Split ``"name"`` or ``"name:key=value,key=value"`` into the name and float parameters.

    Values may be fractions such as ``8/255``.

    Example:
        >>> parse_defense_spec("pgd:eps=4/255,steps=5")
        ('pgd', {'eps': 0.01568627450980392, 'steps': 5.0})
    """
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    params: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Defence parameter {item!r} in {spec!r} must look like key=value, e.g. 'pgd:eps=8/255'.")
        try:
            params[key.strip()] = _parse_number(value.strip())
        except ValueError:
            raise ValueError(f"Defence parameter {key!r} in {spec!r} must be a number; got {value!r}.") from None
    return name, params


def get_defense(spec: str | None) -> Defense:
    """Build a :class:`Defense` from a name or spec, e.g. ``"mixup"``, ``"gaussian:sigma=0.5"``.

    Names: none, mixup, cutmix, cutout, gaussian, jpeg, grayscale, pgd, orthogonal.

    Example:
        >>> get_defense("jpeg").params
        {'quality': 10}
    """
    name, params = parse_defense_spec(spec or "none")
    if name not in DEFENSES:
        raise ValueError(f"Unknown defence {name!r}. Choose from: {', '.join(DEFENSES)}.")
    try:
        defense = DEFENSES[name](**params)
    except TypeError as error:
        raise ValueError(f"Bad parameters for defence {name!r}: {params}. ({error})") from None
    return defense
