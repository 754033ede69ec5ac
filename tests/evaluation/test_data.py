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
    UNRECORDED_BOUND_LEVELS,
    check_row_order,
    dataset_to_tensors,
    protected_mask,
    read_protection_metadata,
    read_run_summary,
    recorded_epsilon,
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


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, 6, 6), dtype=np.uint8))


def test_row_order_is_checked_by_content_within_the_bound():
    clean = _images(40)
    protected = (clean.int() + torch.randint(-8, 9, clean.shape, generator=torch.Generator().manual_seed(0)))
    protected = protected.clamp(0, 255).to(torch.uint8)
    assert check_row_order(clean, protected, epsilon=8 / 255) == {"checked": 40, "changed": 40, "bound": 8}
    with pytest.raises(ValueError, match=r"differs from clean train row \d+ by \d+ levels, more than the protection's "
                                         r"recorded bound of 7;"):
        check_row_order(clean, protected, epsilon=7 / 255)  # a 7/255 protection cannot be 8 levels away
    swapped = protected[torch.tensor([1, 0, *range(2, 40)])]
    with pytest.raises(ValueError, match=r"row 0 .* 2 of the 40 rows checked do.*shuffled, sorted or filtered"):
        check_row_order(clean, swapped, epsilon=8 / 255)
    with pytest.raises(ValueError, match=f"any usual protection bound \\(none is recorded\\) of {UNRECORDED_BOUND_LEVELS}"):
        check_row_order(clean, swapped)
    assert check_row_order(clean, protected, epsilon=7 / 255, tolerance=1)["bound"] == 8  # resized: one level more


def test_row_order_samples_a_large_set_and_warns_when_nothing_changed(caplog):
    clean = _images(300)
    stats = check_row_order(clean, clean, epsilon=8 / 255, max_rows=50)
    assert stats == {"checked": 50, "changed": 0, "bound": 8}
    assert "No protected image differs from its clean image (50 rows checked)" in caplog.text
    shuffled = clean[torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    with pytest.raises(ValueError, match="of the 50 rows checked do"):
        check_row_order(clean, shuffled, epsilon=8 / 255, max_rows=50)


def test_recorded_epsilon_reads_the_protection_record():
    ds = Dataset.from_dict({"x": [1]})
    assert recorded_epsilon(ds) is None
    ds.info.description = json.dumps({"uc_datasets": {"protected": True, "method": "UC", "epsilon": 8 / 255}})
    assert recorded_epsilon(DatasetDict(train=ds)) == 8 / 255
    ds.info.description = "method: UC\nepsilon: 8/255"
    assert recorded_epsilon(ds) is None
