"""Victim models built from transformers configs (no download) and their training loop.

The victims are the paper's three target models, trained from scratch:

* ``resnet18``: ``ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])``.
* ``efficientnet-b1``: ``EfficientNetConfig`` with width 1.0 / depth 1.1 / dropout 0.2
  (the config's defaults are B7). BatchNorm momentum 0.1 in PyTorch's convention (the HF
  default 0.99 is TensorFlow's decay and would keep only the last batch's statistics), and
  symmetric depthwise padding (torchvision's), which works down to 1-pixel feature maps.
* ``regnetx-1.6gf``: ``RegNetConfig(layer_type="x", depths=[2, 4, 10, 2],
  hidden_sizes=[72, 168, 408, 912], groups_width=24)`` (the config's defaults are a RegNetY).

``width`` multiplies every channel count (for CPU runs); images of 64 px or less get a small
stem (3x3 convolution, stride 1, no max-pool). Weights are initialised torchvision-style
(Kaiming-normal convolutions, BatchNorm 1/0). Inputs are images in [0, 1]; the victim
normalises with the ImageNet mean/std itself, so defences and attacks work in pixel space.

Training follows the reference protocol: SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine
decay per step, random crop (or random-resized crop) plus horizontal flip, on accelerate.

Example:
    >>> import torch
    >>> model = build_victim("resnet18", num_classes=3, width=0.125, image_size=8)
    >>> model(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm
from transformers import (
    EfficientNetConfig,
    EfficientNetForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    RegNetConfig,
    RegNetForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
)

from ..imaging import crop_at
from .defenses import Defense

logger = logging.getLogger(__name__)

__all__ = [
    "AUGMENTATIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SMALL_INPUT_MAX_SIZE",
    "VICTIMS",
    "TrainConfig",
    "Victim",
    "augment_batch",
    "build_victim",
    "canonical_victim_name",
    "predict",
    "random_crop",
    "random_flip",
    "random_resized_crop",
    "train_and_predict",
    "train_victim",
    "victim_config",
]

VICTIMS = ("resnet18", "efficientnet-b1", "regnetx-1.6gf")
_ALIASES = {
    "resnet18": "resnet18",
    "resnet-18": "resnet18",
    "efficientnet-b1": "efficientnet-b1",
    "efficientnetb1": "efficientnet-b1",
    "regnetx-1.6gf": "regnetx-1.6gf",
    "regnet-x-1.6gf": "regnetx-1.6gf",
    "regnetx-016": "regnetx-1.6gf",
    "regnet-x-016": "regnetx-1.6gf",
}
AUGMENTATIONS = ("crop", "resized-crop", "none")
SMALL_INPUT_MAX_SIZE = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def canonical_victim_name(name: str) -> str:
    """Normalise a victim name (``"ResNet_18"`` -> ``"resnet18"``); raise on unknown names.

    Example:
        >>> canonical_victim_name("RegNetX_1.6GF")
        'regnetx-1.6gf'
    """
    key = name.strip().lower().replace("_", "-")
    if key not in _ALIASES:
        raise ValueError(f"Unknown victim {name!r}. Choose from: {', '.join(VICTIMS)}.")
    return _ALIASES[key]


def _scale(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def victim_config(name: str, num_classes: int, width: float = 1.0, image_size: int = 224) -> PretrainedConfig:
    """The transformers config of a victim, with ``num_labels = num_classes`` and scaled widths.

    Example:
        >>> victim_config("regnetx-1.6gf", 10).hidden_sizes
        [72, 168, 408, 912]
    """
    if num_classes < 2:
        raise ValueError(f"A victim needs at least 2 classes; got {num_classes}.")
    if not width > 0:
        raise ValueError(f"width must be > 0 (1.0 is the paper's model); got {width}.")
    name = canonical_victim_name(name)
    if name == "resnet18":
        return ResNetConfig(
            layer_type="basic",
            depths=[2, 2, 2, 2],
            hidden_sizes=[_scale(c, width) for c in (64, 128, 256, 512)],
            embedding_size=_scale(64, width),
            num_labels=num_classes,
        )
    if name == "efficientnet-b1":
        config = EfficientNetConfig(
            width_coefficient=1.0 * width,
            depth_coefficient=1.1,
            image_size=image_size,
            dropout_rate=0.2,
            drop_connect_rate=0.2,
            batch_norm_momentum=0.1,
            num_labels=num_classes,
        )
        from transformers.models.efficientnet.modeling_efficientnet import round_filters

        # The head's width must follow the width coefficient (the default 2560 is B7's).
        config.hidden_dim = round_filters(config, 1280)
        # Symmetric k//2 padding in every depthwise convolution (torchvision's convention) instead
        # of the TF-style asymmetric one, which fails on 1-pixel feature maps of small images.
        num_blocks = sum(math.ceil(config.depth_coefficient * r) for r in config.num_block_repeats)
        config.depthwise_padding = list(range(num_blocks))
        return config
    groups = _scale(24, width)
    return RegNetConfig(
        layer_type="x",
        depths=[2, 4, 10, 2],
        hidden_sizes=[max(groups, int(round(c * width / groups)) * groups) for c in (72, 168, 408, 912)],
        groups_width=groups,
        embedding_size=_scale(32, width),
        num_labels=num_classes,
    )


def _use_small_stem(model: PreTrainedModel) -> None:
    """Swap the ImageNet stem for a 3x3, stride-1 one without max-pool, in place."""
    if isinstance(model, ResNetForImageClassification):
        embeddings = model.resnet.embedder
        old = embeddings.embedder.convolution
        embeddings.embedder.convolution = nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=False)
        embeddings.pooler = nn.Identity()
    elif isinstance(model, RegNetForImageClassification):
        model.regnet.embedder.embedder.convolution.stride = (1, 1)  # already 3x3, padding 1
    elif isinstance(model, EfficientNetForImageClassification):
        embeddings = model.efficientnet.embeddings
        embeddings.padding = nn.ZeroPad2d(1)  # with the "valid" 3x3 convolution: same size
        embeddings.convolution.stride = (1, 1)
    else:  # pragma: no cover - guarded by victim_config
        raise TypeError(f"No small stem for {type(model).__name__}.")


def _init_from_scratch(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            layer.reset_parameters()


class Victim(nn.Module):
    """A transformers image classifier that takes images in [0, 1] and returns logits.

    Example:
        >>> victim = build_victim("resnet18", 2, width=0.125, image_size=8)
        >>> victim.name, victim.width, victim.small_input
        ('resnet18', 0.125, True)
    """

    def __init__(self, model: PreTrainedModel, name: str, width: float, small_input: bool) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.width = width
        self.small_input = small_input
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"Victims take RGB images of shape (B, 3, H, W) in [0, 1]; got {tuple(pixels.shape)}.")
        return self.model(pixel_values=(pixels - self.mean) / self.std).logits


def build_victim(
    name: str,
    num_classes: int,
    *,
    width: float = 1.0,
    image_size: int = 224,
    small_input: bool | None = None,
    seed: int | None = None,
) -> Victim:
    """Build a randomly initialised victim (no download).

    Args:
        name: one of ``VICTIMS`` (aliases such as ``resnet-18`` work).
        num_classes: size of the classifier head.
        width: channel multiplier (1.0 = the paper's model; e.g. 0.25 for CPU runs).
        image_size: input side in pixels; decides the stem when ``small_input`` is None.
        small_input: force the small (3x3, stride 1, no max-pool) stem on or off.
        seed: seed of the initial weights (the global RNG is left untouched); None uses it.

    Example:
        >>> build_victim("efficientnet-b1", 5, width=0.25, image_size=16).model.config.hidden_dim
        320
    """
    name = canonical_victim_name(name)
    config = victim_config(name, num_classes, width=width, image_size=image_size)
    model_class = {
        "resnet18": ResNetForImageClassification,
        "efficientnet-b1": EfficientNetForImageClassification,
        "regnetx-1.6gf": RegNetForImageClassification,
    }[name]
    small = image_size <= SMALL_INPUT_MAX_SIZE if small_input is None else bool(small_input)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = model_class(config)
        if small:
            _use_small_stem(model)
        _init_from_scratch(model)
    return Victim(model, name=name, width=width, small_input=small)


# --- augmentation (pure torch; torchvision does not import beside our torch) -------------


def random_flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Flip each image horizontally with probability ``p``.

    Example:
        >>> random_flip(torch.arange(2.0).view(1, 1, 1, 2), p=1.0).flatten().tolist()
        [1.0, 0.0]
    """
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by ``padding`` and take a random crop of the original size, per image.

    Example:
        >>> random_crop(torch.ones(2, 3, 8, 8), 1).shape
        torch.Size([2, 3, 8, 8])
    """
    if padding <= 0:
        return x
    batch = x.shape[0]
    top = torch.randint(0, 2 * padding + 1, (batch,), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (batch,), device=x.device)
    return crop_at(x, padding, top, left)


def random_resized_crop(
    x: torch.Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Random-resized crop (Inception-style) back to the input size, bilinear, per image.

    Example:
        >>> random_resized_crop(torch.ones(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """
    batch = x.shape[0]
    area = torch.empty(batch, device=x.device).uniform_(*scale)
    log_ratio = torch.empty(batch, device=x.device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    # Crop sides as fractions of the image side, at most the whole image.
    crop_w = torch.sqrt(area * aspect).clamp(max=1.0)
    crop_h = torch.sqrt(area / aspect).clamp(max=1.0)
    # Centres such that the crop stays inside, in normalised [-1, 1] coordinates.
    cx = (torch.rand(batch, device=x.device) * 2 - 1) * (1 - crop_w)
    cy = (torch.rand(batch, device=x.device) * 2 - 1) * (1 - crop_h)
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w, cx
    theta[:, 1, 1], theta[:, 1, 2] = crop_h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(x: torch.Tensor, mode: str = "crop") -> torch.Tensor:
    """Training augmentation: ``crop`` (pad 1/8 of the side, random crop) or ``resized-crop``,
    then a horizontal flip; ``none`` leaves images unchanged.

    Example:
        >>> augment_batch(torch.rand(4, 3, 16, 16), "resized-crop").shape
        torch.Size([4, 3, 16, 16])
    """
    if mode == "none":
        return x
    if mode == "crop":
        x = random_crop(x, max(1, x.shape[-1] // 8))
    elif mode == "resized-crop":
        x = random_resized_crop(x)
    else:
        raise ValueError(f"Unknown augmentation {mode!r}. Choose from: {', '.join(AUGMENTATIONS)}.")
    return random_flip(x)


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
) -> Victim:
    """Train ``model`` from its current weights on ``images`` (uint8 or float, (N, 3, H, W)).

    Seeds with ``config.seed``, runs ``epochs`` of SGD with a per-step cosine schedule, random
    augmentation and the defence's hooks, and returns the trained (unwrapped) model.
    ``on_epoch_end(model, epoch)``, when given, is called on every process after each epoch
    with the unwrapped model (in eval mode is fine: training mode is restored after it).

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
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
        >>> victim = build_victim("resnet18", 3, width=0.125, image_size=8)
        >>> predict(victim, torch.zeros(5, 3, 8, 8)).shape
        torch.Size([5])
    """
    accelerator = accelerator or Accelerator()
    predictions = _predict(model, images, batch_size, defense or Defense("none"), accelerator)
    accelerator.free_memory()
    return predictions


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
    oracle), which a protection must also survive.

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8); y = torch.arange(8) % 2
        >>> victim = build_victim("resnet18", 2, width=0.125, image_size=8)
        >>> per_epoch = train_and_predict(victim, x, y, TrainConfig(epochs=2, batch_size=4), x, progress=False)
        >>> len(per_epoch), per_epoch[-1].shape
        (2, torch.Size([8]))
    """
    accelerator = accelerator or Accelerator()
    defense = defense or Defense("none")
    per_epoch: list[torch.Tensor] = []

    def record(trained: Victim, epoch: int) -> None:
        per_epoch.append(_predict(trained, test_images, batch_size, defense, accelerator))

    train_victim(model, images, labels, config, defense=defense, accelerator=accelerator, progress=progress,
                 on_epoch_end=record)
    return per_epoch
