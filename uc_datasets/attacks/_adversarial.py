"""Shared fit of the two "PGD on a trained classifier" baselines (EMaxN and AdvPoison)."""

from __future__ import annotations

import logging
import time

import datasets
import torch

from ..protection.surrogates import Surrogate
from .base import (
    BaselineProtector,
    build_protector,
    check_int,
    check_positive,
    check_two_classes,
    start_fit,
)
from .optim import build_model, error_rate, pgd, train_classifier

logger = logging.getLogger(__name__)

_NAMES = {"emaxn": "EMaxN", "advpoison": "AdvPoison"}


def fit_adversarial(method: str, ds: datasets.Dataset, *, image_column: str, label_column: str | None, epsilon: float,
                    steps: int, step_size: float | None, random_start: bool, train_epochs: int, model: str,
                    model_width: float, lr: float, batch_size: int, surrogate: str | Surrogate | None,
                    surrogate_image_size: int | None, working_size: int, seed: int,
                    device: str | torch.device | None, max_pixels: int, progress: bool,
                    targeted: bool) -> BaselineProtector:
    """Train a classifier on the clean images, then one PGD perturbation per image.

    ``targeted=False`` (EMaxN) maximises the loss of the image's own class; ``True``
    (AdvPoison) minimises the loss of the target class ``(y + 1) mod n_classes``.
    """
    from tqdm.auto import tqdm

    step_size = epsilon / 10 if step_size is None else step_size
    check_int(steps=steps, train_epochs=train_epochs, batch_size=batch_size)
    check_positive(step_size=step_size, model_width=model_width, lr=lr)
    params = {"steps": steps, "step_size": step_size, "random_start": bool(random_start),
              "train_epochs": train_epochs, "model": model, "model_width": model_width, "lr": lr,
              "batch_size": batch_size}
    if targeted:
        params["target"] = "(y + 1) mod n_classes"
    cfg, device, data = start_fit(method, ds, perturbation="samplewise", params=params, image_column=image_column,
                                  label_column=label_column, epsilon=epsilon, surrogate=surrogate,
                                  surrogate_image_size=surrogate_image_size, working_size=working_size, seed=seed,
                                  device=device, max_pixels=max_pixels, progress=progress)
    name = _NAMES[method]
    check_two_classes(data, name)
    t0 = time.perf_counter()
    eps = cfg.epsilon
    n_classes = len(data.classes)
    net = build_model(model, n_classes, width=model_width, hw=data.hw, seed=seed, device=device)
    net = train_classifier(net, data.x, data.y, epochs=train_epochs, batch_size=batch_size, lr=lr, seed=seed,
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
    return build_protector(BaselineProtector, cfg, deltas, data, ds=ds, image_column=image_column, seconds=seconds,
                           max_pixels=max_pixels, stats=stats)
