"""The optimisation pieces the model-based baselines share: the model, its training, L-inf PGD.

The "model trained alongside" (EMinN) or "trained classifier" (EMaxN, AdvPoison) is a
victim from :func:`uc_datasets.evaluation.victims.build_victim` (ResNet-18 by default, ``width`` scales
its channels; images of 64 px or less get the small 3x3 stem), trained from scratch on the
working-resolution images with SGD (lr 0.1, momentum 0.9, weight decay 5e-4: the reference
settings of Huang et al. 2021 and of the victims here).

Perturbations are added as the protector adds them: grey images get the luminance of the
perturbation on every channel, and the sum is clamped to [0, 1].
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from uc_datasets.core.augment import augment_batch
from uc_datasets.core.imaging import perturb
from uc_datasets.core.models import Victim, build_victim

logger = logging.getLogger(__name__)

__all__ = ["BatchStream", "build_model", "error_rate", "pgd", "sgd", "train_classifier"]

#: SGD settings of the model trained alongside (Huang et al. 2021's ResNet-18 config).
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


def build_model(name: str, num_classes: int, *, width: float, hw: tuple[int, int], seed: int,
                device: torch.device) -> Victim:
    """A randomly initialised classifier for the working resolution ``hw`` (at least 2 outputs)."""
    return build_victim(name, max(2, num_classes), width=width, image_size=min(hw), seed=seed).to(device)


def sgd(model: torch.nn.Module, lr: float) -> torch.optim.SGD:
    """SGD with the reference momentum and weight decay."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


class BatchStream:
    """Endless mini-batches of row indices: a new seeded permutation every pass.

    Example:
        >>> s = BatchStream(5, 2, seed=0)
        >>> [len(next(s)) for _ in range(3)]
        [2, 2, 1]
    """

    def __init__(self, n: int, batch_size: int, *, seed: int):
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self._batches: list[torch.Tensor] = []

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> torch.Tensor:
        if not self._batches:
            order = torch.randperm(self.n, generator=self.gen)
            self._batches = list(order.split(self.batch_size))[::-1]
        return self._batches.pop()

    def epoch(self) -> list[torch.Tensor]:
        """One fresh shuffled pass, as a list of batches."""
        return list(torch.randperm(self.n, generator=self.gen).split(self.batch_size))


def _float(x_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x_u8.to(device, non_blocking=True).float().div_(255.0)


def train_classifier(model: Victim, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
                     seed: int, device: torch.device, augment: str = "crop", progress: bool = True) -> Victim:
    """Train ``model`` on clean uint8 images ``(N, 3, h, w)`` with labels ``(N,)``: SGD, per-step cosine, crop+flip.

    Example:
        >>> m = build_model("resnet18", 2, width=0.125, hw=(8, 8), seed=0, device=torch.device("cpu"))
        >>> x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
        >>> m = train_classifier(m, x, torch.arange(6) % 2, epochs=1, batch_size=3, lr=0.1, seed=0,
        ...                      device=torch.device("cpu"), progress=False)
    """
    from tqdm.auto import tqdm

    stream = BatchStream(len(x), batch_size, seed=seed)
    steps_per_epoch = -(-len(x) // batch_size)
    total = max(1, epochs * steps_per_epoch)
    opt = sgd(model, lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    model.train().requires_grad_(True)
    bar = tqdm(total=total, desc="train classifier", disable=not progress, leave=False)
    for _ in range(epochs):
        for idx in stream.epoch():
            xb = augment_batch(_float(x[idx], device), augment)
            loss = F.cross_entropy(model(xb), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


def pgd(model: torch.nn.Module, x: torch.Tensor, grey: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, *,
        epsilon: float, steps: int, step_size: float, minimize: bool, augment: str = "none") -> torch.Tensor:
    """L-inf projected sign-gradient steps on ``delta`` for the cross-entropy of ``model(x + delta)`` w.r.t. ``y``.

    ``minimize=True`` lowers the loss (error-minimising noise; with target labels, a targeted
    attack), ``False`` raises it (error-maximising). Each step is
    ``delta <- clamp(delta -/+ step_size * sign(grad), -epsilon, epsilon)``. The model's weights
    get no gradients; put it in eval mode first. ``augment`` (``"crop"``: the victims' random
    crop + flip, :func:`~uc_datasets.evaluation.victims.augment_batch`) draws a fresh
    transformation ``T`` every step and differentiates ``loss(model(T(x + delta)))``: an
    expectation over the victim's transformations, so the result survives them.

    Args:
        x: images ``(B, 3, h, w)`` in [0, 1]; grey: ``(B,)`` bool; y: labels ``(B,)``;
        delta: start ``(B, 3, h, w)``, within ``[-epsilon, epsilon]``.

    Returns:
        The new delta ``(B, 3, h, w)``, detached.

    Example:
        >>> m = build_model("resnet18", 2, width=0.125, hw=(8, 8), seed=0, device=torch.device("cpu")).eval()
        >>> d = pgd(m, torch.rand(2, 3, 8, 8), torch.tensor([False, True]), torch.tensor([0, 1]),
        ...         torch.zeros(2, 3, 8, 8), epsilon=8 / 255, steps=2, step_size=2 / 255, minimize=True)
        >>> bool(d.abs().max() <= 8 / 255 + 1e-7)
        True
    """
    delta = delta.detach().clone()
    sign = -1.0 if minimize else 1.0
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(augment_batch(perturb(x, delta, grey), augment)), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = (delta + sign * step_size * grad.sign()).clamp_(-epsilon, epsilon)
    return delta.detach()


@torch.no_grad()
def error_rate(model: torch.nn.Module, x: torch.Tensor, grey: torch.Tensor, y: torch.Tensor, deltas: torch.Tensor,
               row_of: torch.Tensor, *, batch_size: int, device: torch.device) -> float:
    """Share of images ``x + deltas[row_of]`` that ``model`` misclassifies (eval mode)."""
    model.eval()
    wrong = 0
    for s in range(0, len(x), batch_size):
        sl = slice(s, s + batch_size)
        xb = perturb(_float(x[sl], device), deltas[row_of[sl]].to(device), grey[sl])
        wrong += int((model(xb).argmax(1).cpu() != y[sl]).sum())
    return wrong / max(1, len(x))
