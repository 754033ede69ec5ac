import datasets
import numpy as np
import pytest

from tests.conftest import image_dataset, structured_images
from uc_datasets.core.sources import FASHION_MNIST_DIR, load_fashion_mnist, load_source

needs_fmnist = pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason="apt-get install dataset-fashion-mnist (.ci/run does)")


@needs_fmnist
def test_fashion_mnist_from_the_debian_package():
    ds = load_fashion_mnist("test", max_samples=50)
    assert len(ds) == 50 and ds.features["label"].names[9] == "Ankle boot"
    img = ds[0]["image"]
    assert img.mode == "L" and img.size == (28, 28)
    assert ds[0]["label"] == 9  # the first test image is an ankle boot
    assert np.asarray(img).max() > 100


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)


def test_load_source_disk_folder_and_errors(tmp_path):
    ds = image_dataset(structured_images(4))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    ds.save_to_disk(str(tmp_path / "d"))
    assert len(load_source(str(tmp_path / "dd"), split="train")) == 4
    assert len(load_source(str(tmp_path / "d"), split="train")) == 4
    folder = tmp_path / "folder" / "cats"
    folder.mkdir(parents=True)
    for i, img in enumerate(structured_images(3)):
        img.save(folder / f"{i}.png")
    got = load_source(str(tmp_path / "folder"), split="train")
    assert len(got) == 3 and "image" in got.column_names
    with pytest.raises(KeyError, match="available splits"):
        load_source(str(tmp_path / "dd"), split="validation")
