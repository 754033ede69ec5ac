"""The unsupervised hacker (the paper's Figure 4b): SimCLR on the scraped images, then a linear probe.

A hacker who ignores labels trains a SimCLR encoder (Chen et al., ICML 2020) on the images it
scraped (protected or clean), freezes it, and fits a linear probe on *clean* labelled data.
The probe's accuracy on the clean test set says how much the protection kept the encoder from
learning useful features; :func:`simclr_probe` runs the whole attack.

* Encoder: a victim backbone from a transformers config (ResNet-18 by default; see
  :mod:`uc_datasets.evaluation.victims`), classifier removed, plus a 2-layer projection MLP
  (Linear-BN-ReLU-Linear). The probe uses the pooled backbone features, not the projection.
* Augmentation (:func:`simclr_augment`): SimCLR's CIFAR recipe for small images: random-resized
  crop (scale 0.2-1), horizontal flip, colour jitter with strength 0.5 (brightness, contrast,
  saturation 0.4, hue 0.1, in a random order per image) with probability 0.8, grayscale with
  probability 0.2. No Gaussian blur: SimCLR drops it on CIFAR-sized images.
* Loss: NT-Xent (:func:`nt_xent_loss`) over the 2B views of a batch, temperature 0.5.
  With several processes each one uses its own batch's negatives (no cross-process gather).
* Optimiser: SGD momentum 0.9, weight decay 5e-4, lr 0.06 x batch / 256 with a per-step cosine
  decay, as in the common CIFAR reproductions (MoCo's CIFAR demo, SimSiam's CIFAR setting).

Example:
    >>> import torch
    >>> x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    >>> encoder, losses = train_simclr(x, SimCLRConfig(epochs=1, batch_size=8), width=0.125, progress=False)
    >>> encode(encoder, x).shape
    torch.Size([16, 64])
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from uc_datasets.core.augment import simclr_augment
from uc_datasets.core.contrastive import SimCLREncoder, nt_xent_loss
from uc_datasets.evaluation.victims import _as_float

logger = logging.getLogger(__name__)

__all__ = ["SimCLRConfig", "encode", "linear_probe", "simclr_probe", "train_simclr"]


@dataclass
class SimCLRConfig:
    """SimCLR hyper-parameters; defaults follow SimCLR's CIFAR setting scaled to small images.

    From Chen et al. (2020), Appendix B.9 (CIFAR-10): temperature 0.5, colour-jitter strength
    0.5, no blur, projection to 128-d. From the common SGD reproductions on CIFAR (MoCo's CIFAR
    demo, SimSiam): SGD momentum 0.9, weight decay 5e-4, cosine decay, 200 epochs. ``lr`` is
    the rate for a batch of 256, scaled linearly (``scaled_lr = lr * batch_size / 256``).
    ``crop_scale`` is (0.2, 1.0) rather than ImageNet's (0.08, 1.0): a 0.08 crop of a 28 px
    image is about 8 px.

    Example:
        >>> SimCLRConfig(batch_size=512).scaled_lr
        0.12
    """

    epochs: int = 200
    batch_size: int = 256
    lr: float = 0.06
    momentum: float = 0.9
    weight_decay: float = 5e-4
    temperature: float = 0.5
    projection_dim: int = 128
    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter_strength: float = 0.5
    jitter_p: float = 0.8
    gray_p: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "projection_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2: NT-Xent needs other images as negatives; got {self.batch_size}."
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0 (the rate for a batch of 256, e.g. 0.06); got {self.lr}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay}.")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (SimCLR uses 0.5 on CIFAR); got {self.temperature}.")
        self.crop_scale = tuple(float(s) for s in self.crop_scale)
        low, high = self.crop_scale if len(self.crop_scale) == 2 else (math.nan, math.nan)
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"crop_scale must be (low, high) with 0 < low <= high <= 1, e.g. (0.2, 1.0); got {self.crop_scale}."
            )
        if not self.jitter_strength >= 0:
            raise ValueError(
                f"jitter_strength must be >= 0 (SimCLR uses 0.5 on CIFAR, 1.0 on ImageNet); got {self.jitter_strength}."
            )
        for name in ("jitter_p", "gray_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability and must be in [0, 1]; got {getattr(self, name)}.")

    @property
    def scaled_lr(self) -> float:
        """The optimiser's learning rate: ``lr * batch_size / 256``."""
        return self.lr * self.batch_size / 256

    def to_dict(self) -> dict:
        """The fields as a JSON-friendly dict.

        Example:
            >>> SimCLRConfig(epochs=3).to_dict()["crop_scale"]
            [0.2, 1.0]
        """
        out = asdict(self)
        out["crop_scale"] = list(self.crop_scale)
        return out


# --- augmentation ---------------------------------------------------------------------------


# --- encoder --------------------------------------------------------------------------------


# --- training, encoding, probing -----------------------------------------------------------


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = getattr(images, "shape", type(images))
        raise ValueError(f"{name} must be a tensor (N, 3, H, W), uint8 or float in [0, 1]; got {shape}.")


def train_simclr(
    images: torch.Tensor,
    config: SimCLRConfig,
    *,
    arch: str = "resnet18",
    width: float = 1.0,
    small_input: bool | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = True,
) -> tuple[SimCLREncoder, list[float]]:
    """Train a SimCLR encoder from scratch on ``images`` (uint8 or float, (N, 3, H, W)); no labels.

    Seeds with ``config.seed``; each step draws two :func:`simclr_augment` views of the batch,
    one forward pass over both, NT-Xent, SGD with a per-step cosine schedule. Returns the
    trained (unwrapped) encoder and the mean loss of every epoch.

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
        >>> encoder, losses = train_simclr(x, SimCLRConfig(epochs=2, batch_size=4), width=0.125, progress=False)
        >>> len(losses)
        2
    """
    _check_images(images)
    if images.shape[0] < 2:
        raise ValueError(f"SimCLR needs at least 2 training images (one batch of 2); got {images.shape[0]}.")
    accelerator = accelerator or Accelerator()
    set_seed(config.seed)
    encoder = SimCLREncoder(
        arch, width=width, image_size=int(images.shape[-1]), small_input=small_input,
        projection_dim=config.projection_dim, seed=config.seed,
    )
    loader = DataLoader(
        TensorDataset(images),
        batch_size=config.batch_size,
        shuffle=True,
        # Full batches only (a last batch of one image has no negatives), unless there is only one.
        drop_last=images.shape[0] > config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
    )
    optimizer = torch.optim.SGD(
        encoder.parameters(), lr=config.scaled_lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    model, optimizer, loader = accelerator.prepare(encoder, optimizer, loader)
    total_steps = max(1, len(loader) * config.epochs)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    set_seed(config.seed, device_specific=True)  # different views on every process
    bar = tqdm(total=total_steps, desc="train SimCLR", leave=False,
               disable=not (progress and accelerator.is_local_main_process))
    augment = {"crop_scale": config.crop_scale, "jitter_strength": config.jitter_strength,
               "jitter_p": config.jitter_p, "gray_p": config.gray_p}
    model.train()
    history: list[float] = []
    for epoch in range(config.epochs):
        losses = []
        for (batch,) in loader:
            x = _as_float(batch)
            if x.shape[0] < 2:
                continue  # a process's share of a tiny last batch: no negatives
            views = torch.cat([simclr_augment(x, **augment), simclr_augment(x, **augment)])
            z1, z2 = model(views).chunk(2)
            loss = nt_xent_loss(z1, z2, config.temperature)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        mean = float(accelerator.reduce(torch.tensor(np.mean(losses) if losses else math.nan,
                                                     device=accelerator.device), "mean"))
        history.append(mean)
        logger.debug("SimCLR epoch %d/%d: mean loss %.4f", epoch + 1, config.epochs, mean)
    bar.close()
    trained = accelerator.unwrap_model(model)
    accelerator.free_memory()
    logger.info("Trained SimCLR %s (width %g, %d steps): loss %.3f -> %.3f",
                trained.arch, trained.width, total_steps, history[0], history[-1])
    return trained, history


@torch.no_grad()
def encode(
    encoder: SimCLREncoder,
    images: torch.Tensor,
    *,
    batch_size: int = 512,
    accelerator: Accelerator | None = None,
) -> torch.Tensor:
    """Backbone features (N, D) of ``images`` (uint8 or float), eval mode, gathered from every process.

    Example:
        >>> encode(SimCLREncoder(width=0.125, image_size=8), torch.zeros(3, 3, 8, 8)).shape
        torch.Size([3, 64])
    """
    _check_images(images)
    accelerator = accelerator or Accelerator()
    loader = accelerator.prepare_data_loader(DataLoader(TensorDataset(images), batch_size=batch_size))
    encoder = encoder.to(accelerator.device).eval()
    features = [accelerator.gather_for_metrics(encoder.features(_as_float(batch))) for (batch,) in loader]
    accelerator.free_memory()
    return torch.cat(features).float().cpu() if features else torch.empty(0, encoder.feature_dim)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    seed: int = 0,
    return_predictions: bool = False,
) -> float | tuple[float, torch.Tensor]:
    """Accuracy on the test set of a multinomial logistic regression on standardised features.

    The scaler and the regression (scikit-learn, L2, C = 1) are fitted on the train features only.
    With ``return_predictions`` also the predicted test labels ``(N,)``.

    Example:
        >>> f = torch.tensor([[0.0], [1.0], [0.1], [0.9]]); y = torch.tensor([0, 1, 0, 1])
        >>> linear_probe(f, y, f, y)
        1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = np.asarray(train_features, np.float64), np.asarray(test_features, np.float64)
    y_train, y_test = np.asarray(train_labels).ravel(), np.asarray(test_labels).ravel()
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D; got {x_train.shape} and {x_test.shape}.")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"{len(x_train)}/{len(x_test)} train/test features but {len(y_train)}/{len(y_test)} labels.")
    if len(np.unique(y_train)) < 2:
        raise ValueError("The probe's train labels need at least 2 classes.")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(x_train, y_train)
    predictions = probe.predict(x_test)
    accuracy = float((predictions == y_test).mean())
    return (accuracy, torch.from_numpy(np.asarray(predictions, dtype=np.int64))) if return_predictions else accuracy


def simclr_probe(
    train_images: torch.Tensor,
    probe_images: torch.Tensor,
    probe_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    config: SimCLRConfig,
    *,
    arch: str = "resnet18",
    width: float = 1.0,
    small_input: bool | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = True,
) -> dict:
    """The unsupervised attack: SimCLR on ``train_images`` (protected or clean, labels unused),
    then a linear probe fitted on the clean labelled ``probe_images`` and tested on ``test_images``.

    Returns ``{"probe_acc", "predictions", "loss_history", "seconds"}`` (the probe's test
    predictions; seconds of the whole attack).

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
        >>> result = simclr_probe(x, x, y, x, y, SimCLRConfig(epochs=1, batch_size=4), width=0.125, progress=False)
        >>> sorted(result)
        ['loss_history', 'predictions', 'probe_acc', 'seconds']
    """
    start = time.perf_counter()
    accelerator = accelerator or Accelerator()
    encoder, history = train_simclr(
        train_images, config, arch=arch, width=width, small_input=small_input,
        accelerator=accelerator, progress=progress,
    )
    probe_acc, predictions = linear_probe(
        encode(encoder, probe_images, accelerator=accelerator), probe_labels,
        encode(encoder, test_images, accelerator=accelerator), test_labels,
        seed=config.seed, return_predictions=True,
    )
    seconds = time.perf_counter() - start
    logger.info("SimCLR probe: clean test accuracy %.4f (%.1f s)", probe_acc, seconds)
    return {"probe_acc": probe_acc, "predictions": predictions, "loss_history": history, "seconds": seconds}
