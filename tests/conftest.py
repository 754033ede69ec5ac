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

from tests.torch_threads import one_thread  # noqa: E402

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


# --- the baselines' fixtures (tests/methods/, tests/core/test_labels.py) -------------------
@pytest.fixture
def one_torch_thread():
    """Tiny models run much faster on one thread (and do not fight other processes for the cores).

    The baseline tests use it for every test (``pytestmark``); the UC tests do not, since a fit's
    floats depend on the number of threads and their fixtures are fitted with the default."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def labelled() -> datasets.Dataset:
    """24 RGB 16x16 images in 4 visual groups, labelled by group (ClassLabel)."""
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["r", "g", "b", "r2"])})
    return datasets.Dataset.from_dict({"image": structured_images(24, size=(16, 16)),
                                       "label": [i % 4 for i in range(24)]}, features=features)


@pytest.fixture(scope="session")
def digits() -> datasets.Dataset:
    """60 real grey 16x16 digits (scikit-learn), 10 classes."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = [Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).resize((16, 16), Image.NEAREST)
            for i in range(60)]
    return image_dataset(imgs, d.target[:60].tolist())


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> str:
    """A tiny random ViTForImageClassification (5 classes, 16 px) with its processor, saved locally."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    d = tmp_path_factory.mktemp("tiny_vit_classifier")
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, num_labels=5, initializer_range=1.0)
    ViTForImageClassification(cfg).save_pretrained(d)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def fitted_lc(labelled):
    """Every baseline fitted once in label-consistent mode: {method: protector}."""
    from tests.methods.helpers import BASELINES, COMMON, TINY
    from uc_datasets.registry import fit_method

    with one_thread():
        return {m: fit_method(m, labelled, label_column="label", **COMMON, **TINY[m]) for m in BASELINES}


@pytest.fixture(scope="session")
def fitted_la(labelled):
    """Every baseline fitted once in label-agnostic mode (EfficientNet-Lite0 ImageNet classes at 32 px)."""
    from tests.methods.helpers import BASELINES, COMMON, TINY
    from uc_datasets.registry import fit_method

    with one_thread():
        return {m: fit_method(m, labelled, surrogate="efficientnet-lite0", surrogate_image_size=32, **COMMON,
                              **TINY[m]) for m in BASELINES}
