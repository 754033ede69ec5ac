"""Shared fixtures: a tiny random CLIP saved locally, small synthetic and real image datasets.

Nothing here touches the network: models are built from configs and saved to a temporary
directory, and the real images come from scikit-learn's bundled sample photos and digits.
"""

from __future__ import annotations

import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

TINY_CLIP_CONFIG = dict(
    text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                     vocab_size=99, max_position_embeddings=16, projection_dim=16),
    vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                       image_size=32, patch_size=4, projection_dim=16),
    projection_dim=16,
)


def save_tiny_clip(path, seed: int = 0) -> str:
    """Build a tiny random CLIP with its image processor and save both to ``path``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(**TINY_CLIP_CONFIG)).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_clip_other(tmp_path_factory) -> str:
    """Same architecture, different weights."""
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip_other"), seed=1)


def image_dataset(images, labels=None) -> datasets.Dataset:
    labels = list(range(len(images))) if labels is None else labels
    return datasets.Dataset.from_dict({"image": images, "label": labels}).cast_column("image", datasets.Image())


def structured_images(n: int, size=(24, 24), seed: int = 0, mode: str = "RGB") -> list[Image.Image]:
    """Images with a few distinct visual groups (colour blobs), so clusters are meaningful."""
    rng = np.random.default_rng(seed)
    out = []
    h, w = size[1], size[0]
    for i in range(n):
        g = i % 4
        base = np.zeros((h, w, 3), np.float32)
        base[..., g % 3] = 180
        yy, xx = np.mgrid[:h, :w]
        base += (40 * np.sin((xx + g * 5) / (2 + g)))[..., None]
        base += rng.normal(0, 20, base.shape)
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        out.append(img.convert(mode) if mode != "RGB" else img)
    return out


@pytest.fixture(scope="session")
def rgb40() -> datasets.Dataset:
    """40 RGB images of 24x24 (the issue's contract size)."""
    return image_dataset(structured_images(40))


@pytest.fixture(scope="session")
def real_photos() -> list[Image.Image]:
    """scikit-learn's two bundled photos (427x640 JPEG-sourced RGB), as PIL images."""
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(a) for a in load_sample_images().images]


@pytest.fixture(scope="session")
def digits_ds() -> datasets.Dataset:
    """60 real 8x8 grey digit images (scikit-learn), upscaled to 16x16, mode L."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = [Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).resize((16, 16), Image.NEAREST)
            for i in range(60)]
    return image_dataset(imgs, d.target[:60].tolist())


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


FAST_FIT = dict(n_clusters=4, epsilon=8 / 255, epochs=2, batch_size=16, ngf=8, n_blocks=1, seed=0, progress=False)


@pytest.fixture(scope="session")
def fitted(tiny_clip, rgb40):
    """(dataset, protector) fitted once for the session with the tiny CLIP."""
    from uc_datasets import UnlearnableClusters

    return rgb40, UnlearnableClusters(surrogate=tiny_clip, **FAST_FIT).fit(rgb40, image_column="image")
