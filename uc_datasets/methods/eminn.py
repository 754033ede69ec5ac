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
    >>> from uc_datasets.methods.eminn import EMinN
    >>> prot = EMinN(epsilon=16 / 255).fit(ds)  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import datasets
import torch

from uc_datasets.core.augment import augment_batch
from uc_datasets.core.config import choice
from uc_datasets.core.imaging import perturb
from uc_datasets.methods.baseline import (
    PERTURBATIONS,
    BaselineMethod,
    BaselineProtector,
    BaselineSettings,
    check_int,
    check_positive,
    check_two_classes,
)
from uc_datasets.methods.optim import BatchStream, build_model, error_rate, pgd, sgd

logger = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "EMinN", "EMinNClasswise", "EMinNConfig"]

#: Crafting augmentations: none (the reference) or the victims' crop + flip.
AUGMENTATIONS = ("none", "crop")
#: Reference settings per perturbation type (step size is ``epsilon / 10`` unless given).
DEFAULTS = {
    "samplewise": {"steps": 20, "stop_error": 0.01},
    "classwise": {"steps": 1, "stop_error": 0.1},
}


@dataclass
class EMinNConfig(BaselineSettings):
    """EMinN's settings (the shared ones of :class:`~uc_datasets.methods.baseline.BaselineSettings` first).

    ``steps`` PGD steps of ``step_size`` per pass (defaults per perturbation type: :data:`DEFAULTS`;
    the step ``epsilon / 10``); ``train_steps`` SGD steps of the model per round; stop when
    the model's error on the perturbed data is below ``stop_error`` (per type) or after
    ``max_rounds``; ``model``, ``model_width``, ``lr``, ``batch_size``: the classifier (a
    ``build_victim`` name and channel multiplier), its SGD learning rate and the batch;
    ``augment``: ``none`` (the reference) or ``crop`` (craft under the victims' crop + flip).

    Example:
        >>> EMinNConfig(steps=5).batch_size
        512
        >>> EMinNConfig(augment="flip")
        Traceback (most recent call last):
        ValueError: augment must be one of ('none', 'crop'), got 'flip'.
    """

    steps: int | None = None
    step_size: float | None = None
    train_steps: int = 10
    stop_error: float | None = None
    max_rounds: int = 50
    model: str = "resnet18"
    model_width: float = 1.0
    lr: float = 0.1
    batch_size: int = 512
    augment: str = choice("none", AUGMENTATIONS)

    def _check_params(self) -> None:
        super()._check_params()
        check_int(train_steps=self.train_steps, max_rounds=self.max_rounds, batch_size=self.batch_size,
                  **({} if self.steps is None else {"steps": self.steps}))
        check_positive(model_width=self.model_width, lr=self.lr,
                       **({} if self.step_size is None else {"step_size": self.step_size}))
        if self.stop_error is not None and not 0 <= self.stop_error < 1:
            raise ValueError(f"stop_error must be in [0, 1), got {self.stop_error!r}.")


class EMinN(BaselineMethod):
    """Sample-wise error-minimising noise (min-min); :class:`EMinNClasswise` is the class-wise variant.

    Example:
        >>> EMinN(steps=5).config.steps
        5
    """

    name: ClassVar[str] = "eminn"
    names: ClassVar[tuple[str, ...]] = ("EMinN",)
    config: EMinNConfig
    config_class: ClassVar[type[EMinNConfig]] = EMinNConfig
    perturbation: ClassVar[str] = "samplewise"

    def __init__(self, config: EMinNConfig | None = None, *, perturbation: str | None = None, **kwargs: object) -> None:
        """``perturbation`` (optional) must name this class's type: ``eminn`` is sample-wise and
        ``eminn-classwise`` class-wise (the reference's ``perturbation`` switch)."""
        if perturbation is not None:
            if perturbation not in PERTURBATIONS:
                raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}.")
            if perturbation != self.perturbation:
                other = "eminn-classwise" if perturbation == "classwise" else "eminn"
                raise ValueError(f"{type(self).__name__} is {self.perturbation}; for {perturbation} noise use the "
                                 f"method {other!r} (fit_method({other!r}, ...) or --method {other}).")
        super().__init__(config, **kwargs)

    def fit(self, ds: datasets.Dataset, *, image_column: str = "image",
            label_column: str | None = None) -> BaselineProtector:
        """Fit on every image of ``ds[image_column]`` (``label_column``: label-consistent mode).

        Returns:
            A :class:`~uc_datasets.methods.baseline.BaselineProtector` whose ``deltas`` are
            ``(n_images, 3, h, w)`` (sample-wise; duplicates share one) or ``(n_classes, 3, h, w)``.
        """
        from tqdm.auto import tqdm

        c, perturbation, progress = self.config, self.perturbation, self.progress
        d = DEFAULTS[perturbation]
        steps = d["steps"] if c.steps is None else c.steps
        stop_error = d["stop_error"] if c.stop_error is None else c.stop_error
        step_size = c.epsilon / 10 if c.step_size is None else c.step_size
        train_steps, max_rounds, model, model_width = c.train_steps, c.max_rounds, c.model, c.model_width
        lr, batch_size, augment, seed = c.lr, c.batch_size, c.augment, c.seed
        params = {"steps": steps, "step_size": step_size, "train_steps": train_steps, "stop_error": stop_error,
                  "max_rounds": max_rounds, "model": model, "model_width": model_width, "lr": lr,
                  "batch_size": batch_size, "init": "uniform", "augment": augment}
        cfg, device, data = self.start(ds, image_column=image_column, label_column=label_column, params=params)
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
        return self.finish(cfg, deltas, data, ds=ds, image_column=image_column,
                           seconds={"attack": round(time.perf_counter() - t0, 3)}, stats=stats)


class EMinNClasswise(EMinN):
    """Class-wise error-minimising noise: one perturbation per class (the class's mean PGD result).

    Example:
        >>> EMinNClasswise().perturbation
        'classwise'
    """

    name: ClassVar[str] = "eminn-classwise"
    names: ClassVar[tuple[str, ...]] = ("EMinN-classwise",)
    perturbation: ClassVar[str] = "classwise"
    method_key: ClassVar[str] = "eminn"
