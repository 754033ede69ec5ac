"""What EMaxN and AdvPoison share: PGD on a classifier trained on the clean images.

One class, :class:`PGDPoison`, holds the fit; ``targeted=False`` (EMaxN) maximises the loss of
the image's own class, ``targeted=True`` (AdvPoison) minimises the loss of the target class
``(y + 1) mod n_classes``. The two methods differ only in that switch and their default steps.

Example:
    >>> from uc_datasets.methods.emaxn import EMaxN
    >>> prot = EMaxN(steps=20).fit(ds, label_column="label")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import datasets
import torch

from uc_datasets.methods.baseline import (
    BaselineMethod,
    BaselineProtector,
    BaselineSettings,
    check_int,
    check_positive,
    check_two_classes,
)
from uc_datasets.methods.optim import build_model, error_rate, pgd, train_classifier

logger = logging.getLogger(__name__)

__all__ = ["PGDPoison", "PGDPoisonConfig"]


@dataclass
class PGDPoisonConfig(BaselineSettings):
    """Settings of a PGD poison: ``steps`` PGD steps of ``step_size`` (default ``epsilon / 10``),
    from a uniform random start in the ball (``random_start``) or zero, on a classifier
    (``model``, ``model_width``: a ``build_victim`` name and channel multiplier) trained
    ``train_epochs`` epochs on the clean images with SGD ``lr`` and ``batch_size``.

    Example:
        >>> round(PGDPoisonConfig(epsilon=8 / 255).step_size_or_default * 255, 6)  # epsilon / 10
        0.8
    """

    steps: int = 20
    step_size: float | None = None
    random_start: bool = True
    train_epochs: int = 30
    model: str = "resnet18"
    model_width: float = 1.0
    lr: float = 0.1
    batch_size: int = 256

    @property
    def step_size_or_default(self) -> float:
        return self.epsilon / 10 if self.step_size is None else self.step_size

    def _check_params(self) -> None:
        super()._check_params()
        check_int(steps=self.steps, train_epochs=self.train_epochs, batch_size=self.batch_size)
        check_positive(step_size=self.step_size_or_default, model_width=self.model_width, lr=self.lr)


class PGDPoison(BaselineMethod):
    """Train a classifier on the clean images, then one PGD perturbation per image (sample-wise)."""

    config: PGDPoisonConfig
    config_class: ClassVar[type[PGDPoisonConfig]] = PGDPoisonConfig
    #: False: maximise the loss of the true class (EMaxN); True: minimise the target class's (AdvPoison).
    targeted: ClassVar[bool] = False

    def fit(self, ds: datasets.Dataset, *, image_column: str = "image",
            label_column: str | None = None) -> BaselineProtector:
        """Fit on every image of ``ds[image_column]``; a sample-wise protector, ``deltas`` ``(n_images, 3, h, w)``.

        ``label_column=None`` is label-agnostic (classes predicted by the surrogate); a column
        name is label-consistent (the dataset's labels).
        """
        c, targeted, progress = self.config, self.targeted, self.progress
        steps, step_size, random_start, batch_size = c.steps, c.step_size_or_default, c.random_start, c.batch_size
        seed = c.seed
        params = {"steps": steps, "step_size": step_size, "random_start": bool(random_start),
                  "train_epochs": c.train_epochs, "model": c.model, "model_width": c.model_width, "lr": c.lr,
                  "batch_size": batch_size}
        if targeted:
            params["target"] = "(y + 1) mod n_classes"
        cfg, device, data = self.start(ds, image_column=image_column, label_column=label_column, params=params)
        name = self.names[0]
        from tqdm.auto import tqdm

        check_two_classes(data, name)
        t0 = time.perf_counter()
        eps = cfg.epsilon
        n_classes = len(data.classes)
        net = build_model(c.model, n_classes, width=c.model_width, hw=data.hw, seed=seed, device=device)
        net = train_classifier(net, data.x, data.y, epochs=c.train_epochs, batch_size=batch_size, lr=c.lr, seed=seed,
                               device=device, progress=progress)
        t_train = time.perf_counter() - t0
        net.eval().requires_grad_(False)
        row_of, uniq = data.unique_rows()
        goal = (data.y + 1) % n_classes if targeted else data.y
        gen = torch.Generator().manual_seed(seed + 3)
        deltas = torch.zeros(len(uniq), 3, *data.hw)
        x, grey = data.x, data.grey
        for idx in tqdm(list(torch.arange(len(x)).split(batch_size)), desc=f"{name} PGD", disable=not progress):
            start = torch.zeros(len(idx), 3, *data.hw)
            if random_start:
                start = (torch.rand(len(idx), 3, *data.hw, generator=gen) * 2 - 1) * eps
            deltas[row_of[idx]] = pgd(net, x[idx].to(device).float().div_(255), grey[idx], goal[idx].to(device),
                                      start.to(device), epsilon=eps, steps=steps, step_size=step_size,
                                      minimize=targeted).cpu()
        clean_err = error_rate(net, x, grey, data.y, torch.zeros(1, 3, *data.hw), torch.zeros(len(x), dtype=torch.long),
                               batch_size=batch_size, device=device)
        adv_err = error_rate(net, x, grey, data.y, deltas, row_of, batch_size=batch_size, device=device)
        stats = {"classifier_train_error": round(clean_err, 6), "classifier_error_on_perturbed": round(adv_err, 6)}
        if targeted:
            stats["target_hit_rate"] = round(1 - error_rate(net, x, grey, goal, deltas, row_of, batch_size=batch_size,
                                                            device=device), 6)
        logger.info("%s: classifier error %.3f on clean, %.3f on perturbed training images", name, clean_err, adv_err)
        seconds = {"train_classifier": round(t_train, 3), "attack": round(time.perf_counter() - t0 - t_train, 3)}
        return self.finish(cfg, deltas, data, ds=ds, image_column=image_column, seconds=seconds, stats=stats)
