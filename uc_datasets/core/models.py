"""The model builder shared by the hacker's victims and the baselines' crafting models.

The victims are the paper's three target models, built from transformers configs (no
download) and trained from scratch:

* ``resnet18``: ``ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])``.
* ``efficientnet-b1``: ``EfficientNetConfig`` with width 1.0 / depth 1.1 / dropout 0.2
  (the config's defaults are B7). BatchNorm momentum 0.1 in PyTorch's convention (the HF
  default 0.99 is TensorFlow's decay and would keep only the last batch's statistics), and
  symmetric depthwise padding (torchvision's), which works down to 1-pixel feature maps.
* ``regnetx-1.6gf``: ``RegNetConfig(layer_type="x", depths=[2, 4, 10, 2],
  hidden_sizes=[72, 168, 408, 912], groups_width=24)`` (the config's defaults are a RegNetY).

``width`` multiplies every channel count (for CPU runs); images of 64 px or less get a small
stem (3x3 convolution, stride 1, no max-pool). Weights are initialised torchvision-style
(Kaiming-normal convolutions, BatchNorm 1/0). Inputs are images in [0, 1]; the model
normalises with the ImageNet mean/std itself, so defences and attacks work in pixel space.

Example:
    >>> import torch
    >>> model = build_victim("resnet18", num_classes=3, width=0.125, image_size=8)
    >>> model(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import math

import torch
from torch import nn
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
