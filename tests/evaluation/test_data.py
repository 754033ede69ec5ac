"""Evaluation data helpers: the protected-row mask, the metadata readers, image tensors."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from uc_datasets.core.imaging import ImageModeError
from uc_datasets.evaluation.data import (
    dataset_to_tensors,
    protected_mask,
    read_protection_metadata,
    read_run_summary,
)


def test_protected_mask_exact_counts():
    mask = protected_mask(10, 0.3, seed=0)
    assert mask.dtype == torch.bool and int(mask.sum()) == 3
    assert torch.equal(mask, protected_mask(10, 0.3, seed=0))
    assert int(protected_mask(10, 0.0, seed=0).sum()) == 0 and bool(protected_mask(10, 1.0, seed=0).all())
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    by_class = protected_mask(8, 0.5, seed=1, by="class", labels=labels)
    assert int(by_class.sum()) == 4
    protected_classes = set(labels[by_class].tolist())
    assert len(protected_classes) == 2 and not set(labels[~by_class].tolist()) & protected_classes


def test_metadata_readers(tmp_path):
    ds = Dataset.from_dict({"x": [1]})
    ds.info.description = json.dumps({"method": "UC", "surrogate": "resnet50"})
    assert read_protection_metadata(ds) == {"method": "UC", "surrogate": "resnet50"}
    ds.info.description = "Protected with uc-datasets.\nMethod: UC-CLIP\nsurrogate = openai/clip-vit-base-patch32"
    assert read_protection_metadata(ds) == {"method": "UC-CLIP", "surrogate": "openai/clip-vit-base-patch32"}
    ds.info.description = ""
    assert read_protection_metadata(DatasetDict(train=ds)) == {}
    (tmp_path / "protected").mkdir()
    (tmp_path / "run_summary.json").write_text(json.dumps({"method": "UC", "surrogate": "efficientnet-lite0"}))
    assert read_run_summary(str(tmp_path / "protected")) == {"method": "UC", "surrogate": "efficientnet-lite0"}


def test_dataset_to_tensors_modes_and_resize():
    grey = Image.fromarray(np.array([[0, 255], [128, 64]], dtype=np.uint8), mode="L")
    rgba = Image.fromarray(np.full((2, 2, 4), 100, dtype=np.uint8), mode="RGBA")
    ds = Dataset.from_dict({"image": [grey, rgba], "label": [0, 1]},
                           features=Features({"image": ImageFeature(), "label": Value("int64")}))
    images, labels = dataset_to_tensors(ds)
    assert images.dtype == torch.uint8 and tuple(images.shape) == (2, 3, 2, 2)
    assert images[0, :, 0, 1].tolist() == [255, 255, 255] and images[0, 2, 1, 0] == 128
    assert images[1].unique().tolist() == [100]
    assert labels.tolist() == [0, 1]
    resized, _ = dataset_to_tensors(ds, image_size=4, label_column=None)
    assert tuple(resized.shape) == (2, 3, 4, 4)


def test_dataset_to_tensors_refuses_16_bit_images_as_the_protection_does():
    """One 16-bit policy: the evaluation refuses what the protection refuses, with the same fix."""
    deep = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)).convert("I;16")
    ds = Dataset.from_dict({"image": [deep], "label": [0]},
                           features=Features({"image": ImageFeature(), "label": Value("int64")}))
    with pytest.raises(ImageModeError, match="16"):
        dataset_to_tensors(ds)
