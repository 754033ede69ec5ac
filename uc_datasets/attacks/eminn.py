"""EMinN: error-minimising noise (Huang et al., "Unlearnable Examples", ICLR 2021).

Min-min bilevel optimisation: a classifier is trained on the perturbed images while the
perturbations are optimised to *minimise* its loss, so the data look already learnt.

One round (repeated until the classifier's error on the perturbed data drops below
``stop_error``, or ``max_rounds``):

1. ``train_steps`` SGD steps of the model on mini-batches of ``x + delta`` (no augmentation,
   as in the reference; ``augment="crop"`` trains and crafts under the victims' crop + flip);
2. one pass over the data, batch by batch: ``steps`` steps of PGD that *minimise* the
   cross-entropy w.r.t. each image's label, step ``step_size``, within ``[-eps, eps]``.
   Sample-wise: every image keeps its own result. Class-wise: each class's perturbation
   becomes the mean of its images' results in the batch (then clipped to the ball);
3. the error of the model on the whole perturbed set decides whether to stop.

Reference settings (8/255 on CIFAR-10): sample-wise 20 steps of 0.8/255, stop at 1% error;
class-wise 1 step of 0.8/255, stop at 10% error; 10 training steps a round; batch 512;
ResNet-18, SGD lr 0.1. Our defaults keep the step at a tenth of epsilon, i.e. **1.6/255 at the
paper's 16/255**; steps, stop errors, training steps and batch size are the reference's.
Perturbations start uniform in ``[-eps, eps]`` as in the reference.

Labels: label-agnostic by default (the surrogate classifier's predicted class, e.g. ImageNet
classes of ``efficientnet-lite0``), label-consistent with ``label_column``.

Example:
    >>> from uc_datasets.attacks import eminn
    >>> prot = eminn.fit(ds, perturbation="samplewise", epsilon=16 / 255)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time

import datasets
import torch

from ..imaging import DEFAULT_MAX_PIXELS
from ..protection.surrogates import EFFICIENTNET_LITE0, Surrogate
from .base import (
    BaselineProtector,
    build_protector,
    check_int,
    check_positive,
    check_two_classes,
    start_fit,
)
from ..evaluation.victims import augment_batch
from .optim import BatchStream, build_model, error_rate, perturb, pgd, sgd

logger = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "fit"]

#: Crafting augmentations: none (the reference) or the victims' crop + flip.
AUGMENTATIONS = ("none", "crop")
#: Reference settings per perturbation type (step size is ``epsilon / 10`` unless given).
DEFAULTS = {
    "samplewise": {"steps": 20, "stop_error": 0.01},
    "classwise": {"steps": 1, "stop_error": 0.1},
}


def fit(ds: datasets.Dataset, *, image_column: str = "image", label_column: str | None = None,
        perturbation: str = "samplewise", epsilon: float = 16 / 255, steps: int | None = None,
        step_size: float | None = None, train_steps: int = 10, stop_error: float | None = None,
        max_rounds: int = 50, model: str = "resnet18", model_width: float = 1.0, lr: float = 0.1,
        batch_size: int = 512, augment: str = "none", surrogate: str | Surrogate | None = EFFICIENTNET_LITE0,
        surrogate_image_size: int | None = None, working_size: int = 224, seed: int = 0,
        device: str | torch.device | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: bool = True) -> BaselineProtector:
    """Fit error-minimising noise (min-min) on every image of ``ds[image_column]``.

    Args:
        ds: the dataset to protect.
        image_column: its image column.
        label_column: None for label-agnostic mode (classes predicted by ``surrogate``), or
            the label column for label-consistent mode.
        perturbation: ``"samplewise"`` (one perturbation per image, keyed by a hash of its
            pixels) or ``"classwise"`` (one per class).
        epsilon: L-inf bound in [0, 1] pixel units (16/255, the paper's).
        steps: PGD steps per batch and round (default 20 sample-wise, 1 class-wise).
        step_size: PGD step (default ``epsilon / 10``: 1.6/255 at 16/255).
        train_steps: model SGD steps per round (10).
        stop_error: stop when the model's error on the perturbed data is below this
            (default 0.01 sample-wise, 0.1 class-wise).
        max_rounds: give up after this many rounds (logged as a warning).
        model, model_width: the model trained alongside (``build_victim`` name, channel multiplier).
        lr: its SGD learning rate (momentum 0.9, weight decay 5e-4).
        batch_size: mini-batch size for training and PGD.
        augment: ``"none"`` (the reference: the model and the PGD see ``x + delta`` as stored) or
            ``"crop"``: both see the victims' random crop + flip of ``x + delta``, a fresh draw
            every step (an expectation over the victim's transformations, so that the noise
            still minimises the loss of a victim trained with crop + flip).
        surrogate: label-agnostic classifier (``"efficientnet-lite0"`` or a
            ``*ForImageClassification`` checkpoint, or a loaded one); unused with ``label_column``.
        surrogate_image_size: input size override of the surrogate (fast CPU runs).
        working_size: working resolution for datasets of mixed sizes.
        seed: seeds everything; the same seed on the same machine gives the same protector.
        device: torch device (CUDA when available).
        max_pixels: largest image accepted.
        progress: show progress bars.

    Returns:
        A :class:`~uc_datasets.attacks.base.BaselineProtector` whose ``deltas`` are
        ``(n_images, 3, h, w)`` (sample-wise; duplicates share one) or ``(n_classes, 3, h, w)``.

    Example:
        >>> prot = fit(ds, label_column="label", perturbation="classwise")  # doctest: +SKIP
        >>> ds.map(prot, batched=True)  # needs the label column in the batch  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    d = DEFAULTS.get(perturbation, {})
    steps = d.get("steps", 1) if steps is None else steps
    stop_error = d.get("stop_error", 0.1) if stop_error is None else stop_error
    step_size = epsilon / 10 if step_size is None else step_size
    check_int(steps=steps, train_steps=train_steps, max_rounds=max_rounds, batch_size=batch_size)
    check_positive(step_size=step_size, model_width=model_width, lr=lr)
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}.")
    if not 0 <= stop_error < 1:
        raise ValueError(f"stop_error must be in [0, 1), got {stop_error!r}.")
    params = {"steps": steps, "step_size": step_size, "train_steps": train_steps, "stop_error": stop_error,
              "max_rounds": max_rounds, "model": model, "model_width": model_width, "lr": lr,
              "batch_size": batch_size, "init": "uniform", "augment": augment}
    cfg, device, data = start_fit("eminn", ds, perturbation=perturbation, params=params, image_column=image_column,
                                  label_column=label_column, epsilon=epsilon, surrogate=surrogate,
                                  surrogate_image_size=surrogate_image_size, working_size=working_size, seed=seed,
                                  device=device, max_pixels=max_pixels, progress=progress)
    check_two_classes(data, "EMinN")
    t0 = time.perf_counter()
    eps = cfg.epsilon
    classwise = perturbation == "classwise"
    row_of, uniq = data.unique_rows()
    if classwise:
        row_of = data.y
    n_rows = len(data.classes) if classwise else len(uniq)
    gen = torch.Generator().manual_seed(seed)
    deltas = (torch.rand(n_rows, 3, *data.hw, generator=gen) * 2 - 1) * eps
    net = build_model(model, len(data.classes), width=model_width, hw=data.hw, seed=seed, device=device)
    opt = sgd(net, lr)
    x, grey, y = data.x, data.grey, data.y
    train_stream = BatchStream(len(x), batch_size, seed=seed + 1)
    pass_stream = BatchStream(len(x), batch_size, seed=seed + 2)
    errors: list[float] = []
    rounds = tqdm(range(max_rounds), desc=f"EMinN {perturbation}", disable=not progress)
    for _ in rounds:
        net.train().requires_grad_(True)
        for _ in range(train_steps):
            idx = next(train_stream)
            xb = perturb(x[idx].to(device).float().div_(255), deltas[row_of[idx]].to(device), grey[idx])
            xb = augment_batch(xb, augment)
            loss = torch.nn.functional.cross_entropy(net(xb), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval().requires_grad_(False)
        # sample-wise: the reference walks the data in order; class-wise: shuffled batches
        batches = pass_stream.epoch() if classwise else list(torch.arange(len(x)).split(batch_size))
        for idx in batches:
            rows = row_of[idx]
            new = pgd(net, x[idx].to(device).float().div_(255), grey[idx], y[idx].to(device),
                      deltas[rows].to(device), epsilon=eps, steps=steps, step_size=step_size, minimize=True, augment=augment).cpu()
            if classwise:
                for c in rows.unique().tolist():
                    deltas[c] = new[rows == c].mean(0).clamp_(-eps, eps)
            else:
                deltas[rows] = new
        err = error_rate(net, x, grey, y, deltas, row_of, batch_size=batch_size, device=device)
        errors.append(round(err, 6))
        rounds.set_postfix(error=f"{err:.3f}")
        logger.info("EMinN round %d: error of the model on the perturbed data %.4f", len(errors), err)
        if err < stop_error:
            break
    else:
        logger.warning("EMinN stopped after max_rounds=%d with error %.4f, above stop_error=%.4f; raise max_rounds "
                       "for the reference stopping rule.", max_rounds, errors[-1], stop_error)
    stats = {"rounds": len(errors), "errors": errors, "converged": errors[-1] < stop_error}
    return build_protector(BaselineProtector, cfg, deltas, data, ds=ds, image_column=image_column,
                           seconds={"attack": round(time.perf_counter() - t0, 3)}, max_pixels=max_pixels, stats=stats)
