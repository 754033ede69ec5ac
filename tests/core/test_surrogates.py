import numpy as np
import pytest
import torch
from PIL import Image

from uc_datasets.core.surrogates import (
    PreprocessConfig,
    TorchPreprocess,
    load_surrogate,
)


def _processors():
    from transformers import (
        BitImageProcessor,
        CLIPImageProcessor,
        ConvNextImageProcessor,
        ViTImageProcessor,
    )

    return {
        "clip-bicubic-crop": CLIPImageProcessor(),
        "vit-bilinear-square": ViTImageProcessor(size={"height": 96, "width": 96}),
        "convnext-crop-pct": ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875),
        "dinov2-bicubic": BitImageProcessor(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64},
                                            do_center_crop=True),
    }


@pytest.mark.parametrize("name", list(_processors()))
def test_preprocess_matches_the_models_processor_within_one_level(name, real_photos):
    proc = _processors()[name]
    pre = TorchPreprocess(PreprocessConfig.from_image_processor(proc))
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (40, 57, 3), dtype=np.uint8))  # worst case: noise, upscaled
    for img in [*real_photos, real_photos[0].resize((57, 40)), small]:
        ref = proc(images=img, return_tensors="pt")["pixel_values"]
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)[None]
        ours = pre(x)
        assert ours.shape == ref.shape
        std = torch.tensor(proc.image_std).view(1, 3, 1, 1)
        levels = ((ours - ref) * std * 255).abs().max().item()
        assert levels <= 1.0 + 1e-3, f"{name}: {levels:.3f} uint8 levels off on {img.size}"


def test_clip_surrogate_is_projected_embedding_frozen_and_differentiable(tiny_clip):
    from transformers import CLIPImageProcessor, CLIPModel

    sur = load_surrogate(tiny_clip)
    assert sur.kind == "clip" and sur.embed_dim == 16
    assert not sur.training and not any(p.requires_grad for p in sur.parameters())
    sur.train()  # cannot be switched back to training mode
    assert not sur.model.training

    clip = CLIPModel.from_pretrained(tiny_clip).eval()
    proc = CLIPImageProcessor.from_pretrained(tiny_clip)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        ref = clip.get_image_features(pixel_values=proc(images=img, return_tensors="pt")["pixel_values"])
    ref = getattr(ref, "pooler_output", ref)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)[None].requires_grad_(True)
    emb = sur(x)
    assert torch.allclose(emb, ref, atol=1e-5)
    emb.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def _save(model, proc, path):
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("kind", ["vit", "resnet", "convnext", "dinov2", "siglip", "clip_vision"])
def test_any_transformers_vision_encoder(kind, tmp_path):
    import transformers as tf

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    if kind == "vit":
        m, p, dim = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, **small)), tf.ViTImageProcessor(
            size={"height": 32, "width": 32}), 32
    elif kind == "resnet":
        cfg = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
        m, p, dim = tf.ResNetModel(cfg), tf.ConvNextImageProcessor(size={"shortest_edge": 32}), 16
    elif kind == "convnext":
        cfg = tf.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
        m, p, dim = tf.ConvNextModel(cfg), tf.ConvNextImageProcessor(size={"shortest_edge": 32}), 16
    elif kind == "dinov2":
        m = tf.Dinov2Model(tf.Dinov2Config(image_size=32, patch_size=8, **small))
        p, dim = tf.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}), 32
    elif kind == "siglip":
        m = tf.SiglipVisionModel(tf.SiglipVisionConfig(image_size=32, patch_size=8, **small))
        p, dim = tf.SiglipImageProcessor(size={"height": 32, "width": 32}), 32
    else:
        cfg = tf.CLIPVisionConfig(image_size=32, patch_size=8, projection_dim=12, **small)
        m, p, dim = tf.CLIPVisionModelWithProjection(cfg), tf.CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), 12
    sur = load_surrogate(_save(m, p, tmp_path / kind))
    assert sur.embed_dim == dim
    x = torch.rand(2, 3, 20, 28, requires_grad=True)
    out = sur(x)
    assert out.shape == (2, dim) and torch.isfinite(out).all()
    # A random projection: a plain sum of a LayerNorm output is constant in the input.
    (out * torch.randn(dim, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert float(x.grad.abs().sum()) > 0


def test_offline_imagenet_surrogate_recognises_what_it_sees():
    sur = load_surrogate("efficientnet-lite0", image_size=64)
    assert sur.kind == "imagenet-cnn" and sur.embed_dim == 1280
    x = torch.rand(2, 3, 28, 28, requires_grad=True)
    sur(x).sum().backward()
    assert float(x.grad.abs().sum()) > 0
    assert len(sur.weights_sha256) == 64


def test_offline_imagenet_weights_are_real(real_photos):
    """With its ImageNet head, the surrogate names scikit-learn's photos: palace (698), daisy (985)."""
    sur = load_surrogate("efficientnet-lite0")
    x = torch.stack([torch.from_numpy(np.array(p)).permute(2, 0, 1).float().div(255) for p in real_photos])
    with torch.no_grad():
        top1 = sur.model(sur.preprocess(x)).argmax(1).tolist()
    assert top1 == [698, 985]


def test_image_size_override_and_errors(tiny_clip):
    sur = load_surrogate(tiny_clip, image_size=48)  # ViT position embeddings are interpolated
    assert sur(torch.rand(1, 3, 50, 50)).shape == (1, 16)
    with pytest.raises(ValueError, match="too small"):
        load_surrogate(tiny_clip, image_size=4)
    with pytest.raises(OSError, match="Could not load surrogate"):
        load_surrogate("/nonexistent/model/dir", local_files_only=True)


@pytest.mark.parametrize("path", ["/nonexistent/model/dir", "./no-such-model", "~/no/such/model"])
def test_a_surrogate_path_that_does_not_exist_says_so(path):
    """Not the Hub's "Repo id must be in the form ..." that transformers gives a path it cannot find."""
    with pytest.raises(FileNotFoundError, match=r"the directory does not exist\. Pass a directory saved with "
                                                r"save_pretrained") as err:
        load_surrogate(path)
    assert "Repo id" not in str(err.value)
