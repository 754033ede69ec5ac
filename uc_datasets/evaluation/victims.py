"""Training the hacker's victims, and their per-epoch predictions.

The victims (the paper's three target models, trained from scratch) are built by
:func:`uc_datasets.core.models.build_victim`. Training follows the reference protocol: SGD
lr 0.1, momentum 0.9, weight decay 5e-4, cosine decay per step, random crop (or random-resized
crop) plus horizontal flip (:func:`uc_datasets.core.augment.augment_batch`), on accelerate.

Example:
    >>> import torch
    >>> x, y = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8), torch.arange(8) % 2
    >>> from uc_datasets.core.models import build_victim
    >>> model = build_victim("resnet18", 2, width=0.125, image_size=8)
    >>> model = train_victim(model, x, y, TrainConfig(epochs=1, batch_size=4), progress=False)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from uc_datasets.core.augment import AUGMENTATIONS, augment_batch
from uc_datasets.core.models import Victim
from uc_datasets.evaluation.defenses import Defense

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "evaluation_steps", "predict", "predict_during_training", "train_and_predict",
           "train_victim"]


# --- augmentation (pure torch; torchvision does not import beside our torch) -------------


# --- training and inference ---------------------------------------------------------------


@dataclass
class TrainConfig:
    """Victim training hyper-parameters; the defaults are the reference protocol's.

    Example:
        >>> TrainConfig(epochs=2).lr
        0.1
    """

    epochs: int = 90
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: str = "crop"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1; got {self.epochs} and {self.batch_size}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0; got {self.lr}.")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"Unknown augmentation {self.augment!r}. Choose from: {', '.join(AUGMENTATIONS)}.")

    def to_dict(self) -> dict:
        return asdict(self)


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def _check_data(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W); got {tuple(images.shape)}.")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels; they must match.")
    if images.shape[0] < 2:
        raise ValueError(f"Need at least 2 training images; got {images.shape[0]}.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got range [{int(labels.min())}, {int(labels.max())}].")


def _apply_in_chunks(fn, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Run a float-image transform over uint8 images and return uint8 images."""
    out = [
        (fn(_as_float(images[i : i + chunk])).clamp(0, 1) * 255).round().to(torch.uint8)
        for i in range(0, images.shape[0], chunk)
    ]
    return torch.cat(out)


def train_victim(
    model: Victim,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    *,
    defense: Defense | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[Victim, int], None] | None = None,
    on_step: Callable[[Victim, int], None] | None = None,
    steps: Collection[int] | Callable[[int], Collection[int]] = (),
) -> Victim:
    """Train ``model`` from its current weights on ``images`` (uint8 or float, (N, 3, H, W)).

    Seeds with ``config.seed``, runs ``epochs`` of SGD with a per-step cosine schedule, random
    augmentation and the defence's hooks, and returns the trained (unwrapped) model.
    ``on_epoch_end(model, epoch)``, when given, is called on every process after each epoch
    with the unwrapped model (in eval mode is fine: training mode is restored after it);
    ``on_step(model, step)`` after each optimiser step whose 1-based number is in ``steps`` (or in
    ``steps(steps_per_epoch)``, for a schedule that depends on this process's loader length).
    Neither changes the training: the same seed gives the same weights with or without them.

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
        >>> from uc_datasets.core.models import build_victim
        >>> victim = build_victim("resnet18", 2, width=0.125, image_size=8)
        >>> victim = train_victim(victim, x, y, TrainConfig(epochs=1, batch_size=4), progress=False)
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    _check_data(images, labels, model.num_classes)
    accelerator = accelerator or Accelerator()
    defense = defense or Defense("none")
    set_seed(config.seed)
    if defense.train_images is not None:
        images = _apply_in_chunks(defense.apply_train_images, images)
    if defense.train_set is not None:
        # Needs the labels; keeps float images (a projection may leave [0, 1]).
        images = defense.train_set(_as_float(images), labels)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        TensorDataset(images, labels),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=images.shape[0] > config.batch_size,
        generator=generator,
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    total_steps = max(1, len(loader) * config.epochs)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raw_model = accelerator.unwrap_model(model)
    # Different augmentation streams per process; same weights were set above on all of them.
    set_seed(config.seed, device_specific=True)
    bar = tqdm(
        total=total_steps,
        desc=f"train {raw_model.name}",
        leave=False,
        disable=not (progress and accelerator.is_local_main_process),
    )
    model.train()
    loss_value = float("nan")
    step = 0
    steps = frozenset(steps(len(loader)) if callable(steps) else steps)
    for epoch in range(config.epochs):
        for batch_images, batch_labels in loader:
            x = augment_batch(_as_float(batch_images), config.augment)
            y = F.one_hot(batch_labels, raw_model.num_classes).to(x.dtype)
            x, y = defense.apply_batch(x, y)
            if defense.adversarial is not None:
                raw_model.eval()
                x = defense.adversarial(raw_model, x, y)
                raw_model.train()
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            loss_value = float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            step += 1
            if on_step is not None and step in steps:
                on_step(raw_model, step)
                model.train()
        if on_epoch_end is not None:
            on_epoch_end(raw_model, epoch)
            model.train()
    bar.close()
    logger.debug(
        "Trained %s (%d steps, defence %s): last loss %.4f", raw_model.name, total_steps, defense.name, loss_value
    )
    trained = accelerator.unwrap_model(model)
    accelerator.free_memory()
    return trained


@torch.no_grad()
def _predict(model: Victim, images: torch.Tensor, batch_size: int, defense: Defense,
             accelerator: Accelerator) -> torch.Tensor:
    loader = accelerator.prepare_data_loader(DataLoader(TensorDataset(images), batch_size=batch_size))
    model = model.to(accelerator.device).eval()
    predictions = []
    for (batch_images,) in loader:
        x = defense.apply_test_images(_as_float(batch_images))
        predictions.append(accelerator.gather_for_metrics(model(x).argmax(dim=-1)))
    return torch.cat(predictions).cpu() if predictions else torch.empty(0, dtype=torch.long)


def predict(
    model: Victim,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    defense: Defense | None = None,
    accelerator: Accelerator | None = None,
) -> torch.Tensor:
    """Predicted class indices ``(N,)`` for ``images``, gathered from every process.

    Example:
        >>> from uc_datasets.core.models import build_victim
        >>> victim = build_victim("resnet18", 3, width=0.125, image_size=8)
        >>> predict(victim, torch.zeros(5, 3, 8, 8)).shape
        torch.Size([5])
    """
    accelerator = accelerator or Accelerator()
    predictions = _predict(model, images, batch_size, defense or Defense("none"), accelerator)
    accelerator.free_memory()
    return predictions


def evaluation_steps(n_steps_per_epoch: int, epochs: int, *, per_epoch: int = 1, early_epochs: int = 0) -> list[int]:
    """The 1-based optimiser steps after which a victim is evaluated: the end of every epoch, plus
    ``per_epoch`` evenly spaced points in each of the first ``early_epochs`` epochs.

    A hacker with a clean validation set can stop at any step, and protection is lost early
    (docs/design.md §4): the points inside the first epochs show where.

    Example:
        >>> evaluation_steps(8, 3, per_epoch=4, early_epochs=2)
        [2, 4, 6, 8, 10, 12, 14, 16, 24]
    """
    if per_epoch < 1 or early_epochs < 0:
        raise ValueError(f"per_epoch must be >= 1 and early_epochs >= 0; got {per_epoch} and {early_epochs}.")
    points = {n_steps_per_epoch * e for e in range(1, epochs + 1)}
    for e in range(min(early_epochs, epochs)):
        points.update(e * n_steps_per_epoch + max(1, round(n_steps_per_epoch * k / per_epoch))
                      for k in range(1, per_epoch + 1))
    return sorted(points)


def predict_during_training(
    model: Victim,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    test_images: torch.Tensor,
    *,
    per_epoch: int = 1,
    early_epochs: int = 0,
    defense: Defense | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    batch_size: int = 256,
) -> list[tuple[int, torch.Tensor]]:
    """Train like :func:`train_victim` and predict ``test_images`` at the :func:`evaluation_steps`:
    every epoch's end, and ``per_epoch`` points in each of the first ``early_epochs`` epochs.

    Returns ``(step, predictions (N,))`` in step order; the last point is the final model's and
    its step is ``epochs`` times the steps of an epoch. Predicting does not change the training.

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
        >>> from uc_datasets.core.models import build_victim
        >>> victim = build_victim("resnet18", 2, width=0.125, image_size=8)
        >>> points = predict_during_training(victim, x, y, TrainConfig(epochs=2, batch_size=4), x, per_epoch=2,
        ...                                  early_epochs=1, progress=False)
        >>> [s for s, _ in points]
        [1, 2, 4]
    """
    accelerator = accelerator or Accelerator()
    defense = defense or Defense("none")
    points: list[tuple[int, torch.Tensor]] = []

    def record(trained: Victim, step: int) -> None:
        # a DataLoader draws its base seed from the global RNG: predict on a fork of it, so that
        # the training's augmentation stream is the same with or without the evaluation points
        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=accelerator.device.type):
            points.append((step, _predict(trained, test_images, batch_size, defense, accelerator)))

    train_victim(model, images, labels, config, defense=defense, accelerator=accelerator, progress=progress,
                 on_step=record, steps=lambda n: evaluation_steps(n, config.epochs, per_epoch=per_epoch,
                                                                  early_epochs=early_epochs))
    return points


def train_and_predict(
    model: Victim,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    test_images: torch.Tensor,
    *,
    defense: Defense | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    batch_size: int = 256,
) -> list[torch.Tensor]:
    """Train like :func:`train_victim` and predict ``test_images`` after every epoch.

    Returns one ``(N,)`` prediction tensor per epoch; the last one is the final model's. The
    best epoch on a labelled test split is the attacker's best case (early stopping with an
    oracle), which a protection must also survive. :func:`predict_during_training` predicts
    at any steps (several per epoch).

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
        >>> from uc_datasets.core.models import build_victim
        >>> victim = build_victim("resnet18", 2, width=0.125, image_size=8)
        >>> per_epoch = train_and_predict(victim, x, y, TrainConfig(epochs=2, batch_size=4), x, progress=False)
        >>> len(per_epoch), per_epoch[-1].shape
        (2, torch.Size([8]))
    """
    points = predict_during_training(model, images, labels, config, test_images, defense=defense,
                                     accelerator=accelerator, progress=progress, batch_size=batch_size)
    return [pred for _, pred in points]
