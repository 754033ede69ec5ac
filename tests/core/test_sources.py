import argparse

import datasets
import numpy as np
import pytest
from PIL import Image

from tests.conftest import image_dataset, structured_images
from uc_datasets.commands.arguments import data_files_value, source_options
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


def test_hub_options_are_refused_for_a_local_source(tmp_path):
    image_dataset(structured_images(2)).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"revision='v2'.*select what is read from a Hub dataset repo; "
                                         r"'.*d', a local directory is not one"):
        load_source(str(tmp_path / "d"), revision="v2")
    with pytest.raises(ValueError, match=r"name='grey'.*'fashion-mnist'"):
        load_source("fashion-mnist", name="grey")
    assert len(load_source(str(tmp_path / "d"), token="hf_unused")) == 2  # a token is harmless locally


def test_data_files_as_load_dataset_takes_them():
    assert data_files_value(None) is None and data_files_value(["a/*.parquet"]) == "a/*.parquet"
    assert data_files_value(["a/*", "b/*"]) == ["a/*", "b/*"]
    assert data_files_value(["train=a/*", "test=b/*", "train=c/*"]) == {"train": ["a/*", "c/*"], "test": ["b/*"]}
    with pytest.raises(ValueError, match="mixes SPLIT=PATTERN and plain patterns"):
        data_files_value(["train=a/*", "b/*"])


# ---------------------------------------------------------------------------- Hub sources (tests/hub_server.py)
TOKEN, BOB_TOKEN = "hf_SourcesAliceFAKE0123456789", "hf_SourcesBobFAKE0123456789"


def _config(n: int, base: int) -> datasets.Dataset:
    """``n`` 8x8 RGB images of the flat colours ``base``, ``base + 1``, ... (so every config is told apart)."""
    images = [Image.fromarray(np.full((8, 8, 3), base + i, np.uint8)) for i in range(n)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(n)]}, features=features)


def _colours(ds: datasets.Dataset) -> list[int]:
    return [int(np.asarray(row["image"])[0, 0, 0]) for row in ds]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The Hub stand-in with a two-config dataset (``grey``: 4 rows, ``colour``: 6 rows on main and 3 on
    the branch ``v2``) and a private dataset of bob's, pushed by the real ``Dataset.push_to_hub``."""
    from tests.hub_server import HubServer, hub_environment

    home = tmp_path_factory.mktemp("hf_home")
    with HubServer({TOKEN: "alice", BOB_TOKEN: "bob"}) as server, hub_environment(server, TOKEN, home):
        _config(4, 10).push_to_hub("alice/two-configs", config_name="grey")
        _config(6, 100).push_to_hub("alice/two-configs", config_name="colour")
        _config(3, 200).push_to_hub("alice/two-configs", config_name="colour", revision="v2")
        _config(5, 50).push_to_hub("bob/private", private=True, token=BOB_TOKEN)
        yield server
    assert not server.outside, f"the clients tried to reach hosts outside the stand-in: {server.outside}"


def test_config_name_revision_data_dir_and_data_files_reach_load_dataset(hub):
    assert _colours(load_source("alice/two-configs", name="grey")) == [10, 11, 12, 13]
    assert _colours(load_source("alice/two-configs", name="colour")) == [100, 101, 102, 103, 104, 105]
    assert _colours(load_source("alice/two-configs", name="colour", revision="v2")) == [200, 201, 202]
    assert _colours(load_source("alice/two-configs", data_dir="grey")) == [10, 11, 12, 13]
    files = load_source("alice/two-configs", data_files={"test": "colour/*.parquet"}, split="test")
    assert _colours(files) == [100, 101, 102, 103, 104, 105]
    with pytest.raises(ValueError, match="grey"):  # the two configs need a name: datasets says which exist
        load_source("alice/two-configs")


def test_the_token_reads_a_private_dataset_and_is_never_shown(hub, caplog, capsys):
    with pytest.raises(Exception) as err:  # alice (HF_TOKEN) cannot see bob's private repo
        load_source("bob/private")
    assert TOKEN not in str(err.value)
    assert _colours(load_source("bob/private", token=BOB_TOKEN)) == [50, 51, 52, 53, 54]
    seen = caplog.text + "".join(capsys.readouterr()) + "\n".join(hub.requests)
    assert BOB_TOKEN not in seen and TOKEN not in seen


def _shifted(ds: datasets.Dataset, levels: int) -> datasets.Dataset:
    """Every value ``levels`` up: a stand-in for a protected copy that verify accepts at that bound."""
    return ds.map(lambda row: {"image": Image.fromarray(np.asarray(row["image"]) + levels)})


def test_protect_and_verify_read_a_hub_config_on_the_command_line(hub, tmp_path, capsys):
    from uc_datasets.commands.cli import main

    _shifted(_config(6, 100), 4).save_to_disk(str(tmp_path / "colour+4"))
    hub_args = ["--config-name", "colour", "--token", BOB_TOKEN]  # bob's token reads alice's public repo too
    assert main(["verify", "alice/two-configs", str(tmp_path / "colour+4"), "--epsilon", "4", *hub_args]) == 0
    assert main(["verify", "alice/two-configs", str(tmp_path / "colour+4"), "--epsilon", "4", "--config-name",
                 "colour", "--revision", "v2"]) == 2  # 3 rows on v2 against 6: not the same dataset
    assert main(["verify", "alice/two-configs", str(tmp_path / "colour+4"), "--epsilon", "4", "--data-files",
                 "colour/*.parquet"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["protect", "alice/two-configs", *hub_args, "--label-column", "label", "--pattern", "block",
                 "--epsilon", "8", "--output-dir", str(out)]) == 0
    assert BOB_TOKEN not in "".join(capsys.readouterr()) and BOB_TOKEN not in (out / "run_summary.json").read_text()
    assert len(datasets.load_from_disk(str(out / "protected"))) == 6


def test_evaluate_reads_the_clean_config_from_the_hub(hub, tmp_path):
    from uc_datasets.commands.evaluate import add_evaluate_arguments
    from uc_datasets.evaluation.data import load_evaluation_data

    clean = datasets.DatasetDict(train=_config(6, 100), test=_config(2, 150))
    clean.push_to_hub("alice/eval-clean", config_name="pets")
    datasets.DatasetDict(train=_shifted(clean["train"], 3)).save_to_disk(str(tmp_path / "protected"))
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args(["--clean", "alice/eval-clean", "--protected", str(tmp_path / "protected"),
                              "--config-name", "pets"])
    data, _ = load_evaluation_data(args.clean, args.protected, hub_options=source_options(args))
    assert data.train_labels.tolist() == [0, 1, 0, 1, 0, 1] and data.test_images.shape[0] == 2
    assert int((data.protected_images.int() - data.train_images.int()).max()) == 3


def test_push_reads_the_clean_dataset_from_a_hub_config(hub, tmp_path, capsys):
    from uc_datasets.commands.cli import main

    _shifted(_config(6, 100), 4).save_to_disk(str(tmp_path / "colour+4"))
    push = ["push", str(tmp_path / "colour+4"), "alice/colour-protected", "--clean", "alice/two-configs",
            "--epsilon", "4", "--method", "uc", "--surrogate", "efficientnet-lite0", "--n-clusters", "2"]
    assert main([*push, "--clean-revision", "v2", "--clean-config-name", "colour"]) == 2  # 3 rows, not 6
    err = capsys.readouterr().err
    assert "6" in err and "3" in err, err
    assert main([*push, "--clean-config-name", "colour"]) == 0
    pushed = datasets.load_dataset("alice/colour-protected", split="train")
    assert _colours(pushed) == [104, 105, 106, 107, 108, 109]
