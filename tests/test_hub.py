"""Hub publishing against a local Hub stand-in (tests/hub_server.py), through the real clients.

Nothing here mocks uc_datasets, huggingface_hub or datasets: the server on 127.0.0.1 speaks
the Hub HTTP API. A failing test shows the server's request log under "Captured log".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hub_server import HubServer, hub_environment
from huggingface_hub import CommitInfo, DatasetCard, DatasetCardData, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from PIL import Image

import uc_datasets
from uc_datasets import UCProtector, UnlearnableClusters, load_protector
from uc_datasets.commands.push import add_push_arguments, run_push
from uc_datasets.core.protector_hub import PublicProtectorError
from uc_datasets.hub import (
    CARD_KEY,
    CARD_TAGS,
    ProtectionCheckError,
    ProtectorLeakError,
    push_protected,
    render_card_section,
    write_protected_card,
)

TOKEN = "hf_UCtestFAKEtoken0123456789DoNotLeak"  # alice's; recognisable so a leak is easy to find
BOB_TOKEN = "hf_UCtestFAKEbobToken9876543210"
EPS = 8 / 255
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    d = tmp_path_factory.mktemp("tiny_clip")
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                         vocab_size=99, max_position_embeddings=16, projection_dim=16),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=4, projection_dim=16),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return str(d)


def _images(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = rng.integers(30, 220, size=3)  # a colour per image plus texture, so clusters differ
        arr = np.clip(base + rng.integers(-30, 30, size=(24, 24, 3)), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(arr))
    return out


@pytest.fixture(scope="module")
def clean() -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"image": _images(40, 0), "label": [i % 2 for i in range(40)]},
                                      features=features)


@pytest.fixture(scope="module")
def protector(tiny_clip, clean):
    uc = UnlearnableClusters(surrogate=tiny_clip, n_clusters=4, epsilon=EPS, epochs=1, batch_size=16, ngf=8,
                             n_blocks=1, seed=0, progress=False)
    return uc.fit(clean, image_column="image")


@pytest.fixture(scope="module")
def protected(clean, protector) -> datasets.Dataset:
    return clean.map(protector, batched=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The Hub stand-in, with huggingface_hub and datasets pointed at it for this module only."""
    home = tmp_path_factory.mktemp("hf_home")
    with HubServer({TOKEN: "alice", BOB_TOKEN: "bob"}) as server, hub_environment(server, TOKEN, home):
        yield server
    assert not server.outside, f"the clients tried to reach hosts outside the stand-in: {server.outside}"


def _arrays(ds) -> list[np.ndarray]:
    return [np.asarray(ex["image"]) for ex in ds]


def _repo_files(hub: HubServer, repo_id: str, rev: str = "main", rtype: str = "dataset") -> list[str]:
    repo = hub.repos[(rtype, repo_id)]
    return sorted(repo.resolve(rev).files)


def _card(repo_id: str, revision: str = "main") -> DatasetCard:
    path = hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
    return DatasetCard(open(path, encoding="utf-8").read())


def _dict(clean, protected):
    return (datasets.DatasetDict({"train": clean.select(range(30)), "test": clean.select(range(30, 40))}),
            datasets.DatasetDict({"train": protected.select(range(30)), "test": protected.select(range(30, 40))}))


def protected_report(clean, protected):
    from uc_datasets.core.verify import verify

    return verify(clean, protected, EPS, progress=False)


# ---------------------------------------------------------------------------- round trips
def test_round_trip_pixel_exact_png_and_streaming(hub, clean, protected, protector, tmp_path):
    clean_dd, prot_dd = _dict(clean, protected)
    result = push_protected(prot_dd, "alice/pets", clean=clean_dd, protector=protector, private=True,
                            max_shard_size="20KB", progress=False)
    assert result.revision == "main" and set(result.splits) == {"train", "test"}
    assert all(s["passed"] for s in result.splits.values())
    files = _repo_files(hub, "alice/pets")
    shards = [f for f in files if f.endswith(".parquet")]
    assert len([f for f in shards if "/train-" in f]) > 1  # max_shard_size reached push_to_hub
    # Only the card, git attributes and parquet shards: nothing from the protector.
    assert set(files) - set(shards) == {".gitattributes", "README.md"}
    assert hub.repos[("dataset", "alice/pets")].private

    back = datasets.load_dataset("alice/pets", cache_dir=str(tmp_path / "c"))
    for split in ("train", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(_arrays(back[split]), _arrays(prot_dd[split])))
        raw = back[split].cast_column("image", datasets.Image(decode=False))
        assert all(r["image"]["bytes"][:8] == PNG_MAGIC for r in raw)  # still PNG inside the parquet
        assert back[split]["label"] == prot_dd[split]["label"]

    streamed = datasets.load_dataset("alice/pets", split="test", streaming=True)
    got = _arrays(streamed)
    assert len(got) == 10 and all(np.array_equal(a, b) for a, b in zip(got, _arrays(prot_dd["test"])))


def test_private_dataset_is_not_readable_by_others(hub, clean, protected, protector):
    push_protected(protected.select(range(8)), "alice/secret-ds", clean=clean.select(range(8)),
                   protector=protector, private=True, progress=False)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=BOB_TOKEN).dataset_info("alice/secret-ds")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).dataset_info("alice/secret-ds")
    assert HfApi().dataset_info("alice/secret-ds").private is True


def test_card_says_what_protects_the_images(hub, clean, protected, protector):
    push_protected(protected, "alice/card", clean=clean, protector=protector, progress=False)
    card = _card("alice/card")
    text = card.text
    assert "**protected**" in text
    assert "| `train` | UC-CLIP |" in text and protector.method == "UC-CLIP"
    surrogate_path = protector.surrogate_info["name"]  # a local tiny CLIP: only its last part is shown
    assert f"`{Path(surrogate_path).name} (local model)`" in text and surrogate_path not in str(card)
    assert "| 8/255 | 4 |" in text and f"| {uc_datasets.__version__} |" in text
    assert "PASSED: 40 images" in text and "max deviation" in text
    sentence = next(line for line in text.splitlines() if line.startswith("On average, a protected image"))
    assert f"a PSNR of {protected_report(clean, protected).psnr:.1f} dB and an SSIM of" in sentence
    assert "If you found this dataset" in text and "look normal" in text
    record = card.data[CARD_KEY]["splits"]["train"]
    assert record["method"] == "UC-CLIP" and record["n_clusters"] == 4 and record["epsilon_levels"] == 8
    assert record["passed"] is True and record["uc_datasets_version"] == uc_datasets.__version__
    assert record["psnr_db"] >= 30.07 and 0 < record["ssim"] < 1  # within 8/255: PSNR at least 30.07 dB
    assert {"unlearnable", "protected", "unlearnable-clusters"} <= set(card.data["tags"])
    assert card.data.pretty_name == "card (protected)"  # the repo name, as nothing better is known
    info = card.data["dataset_info"]  # what datasets' own push_to_hub writes, for load_dataset
    assert info["splits"] == [{"name": "train", "num_bytes": info["dataset_size"], "num_examples": 40}]
    assert card.data["configs"] == [{"config_name": "default", "data_files": [{"split": "train",
                                                                                "path": "data/train-*"}]}]


def test_card_edits_and_license_survive_a_second_push(hub, clean, protected, protector, tmp_path):
    api = HfApi()
    api.create_repo("alice/edited", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"---\nlicense: cc-by-4.0\npretty_name: My pets\n---\n# My pets\n\nOwner notes.\n",
                    path_in_repo="README.md", repo_id="alice/edited", repo_type="dataset")
    push_protected(protected.select(range(30)), "alice/edited", split="train", clean=clean.select(range(30)),
                   protector=protector, progress=False)
    card = _card("alice/edited")
    assert card.data["license"] == "cc-by-4.0" and "Owner notes." in card.text
    # The user edits the card on the Hub between pushes.
    card.data["language"] = ["en"]
    card.text += "\n## Collection\n\nTaken in my garden.\n"
    api.upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id="alice/edited",
                    repo_type="dataset")
    push_protected(protected.select(range(30, 40)), "alice/edited", split="test",
                   clean=clean.select(range(30, 40)), protector=protector, progress=False)
    card = _card("alice/edited")
    assert card.data["license"] == "cc-by-4.0" and card.data["pretty_name"] == "My pets"
    assert card.data["language"] == ["en"]
    assert "Owner notes." in card.text and "Taken in my garden." in card.text
    assert set(card.data[CARD_KEY]["splits"]) == {"train", "test"}
    assert card.text.count("If you found this dataset") == 1
    assert "| `train` |" in card.text and "| `test` |" in card.text
    back = datasets.load_dataset("alice/edited", cache_dir=str(tmp_path / "c"))
    assert {k: len(v) for k, v in back.items()} == {"train": 30, "test": 10}


def test_push_to_a_revision(hub, clean, protected, protector, tmp_path):
    sub_clean, sub_prot = clean.select(range(12)), protected.select(range(12))
    result = push_protected(sub_prot, "alice/rev", clean=sub_clean, protector=protector, revision="v2",
                            progress=False)
    assert result.revision == "v2"
    assert not any(f.endswith(".parquet") for f in _repo_files(hub, "alice/rev", "main"))
    assert "If you found this dataset" in _card("alice/rev", "v2").text
    back = datasets.load_dataset("alice/rev", revision="v2", split="train", cache_dir=str(tmp_path / "c"))
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(back), _arrays(sub_prot)))


def test_push_as_pull_request(hub, clean, protected, protector, tmp_path):
    sub_clean, sub_prot = clean.select(range(12)), protected.select(range(12))
    result = push_protected(sub_prot, "alice/pr", clean=sub_clean, protector=protector, create_pr=True,
                            progress=False)
    assert result.pr_url and result.pr_url.endswith("/discussions/1") and result.revision == "refs/pr/1"
    assert not any(f.endswith(".parquet") for f in _repo_files(hub, "alice/pr", "main"))  # main untouched
    assert "If you found this dataset" in _card("alice/pr", "refs/pr/1").text
    back = datasets.load_dataset("alice/pr", revision="refs/pr/1", split="train", cache_dir=str(tmp_path / "c"))
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(back), _arrays(sub_prot)))


def _history(hub: HubServer, repo_id: str, rev: str = "main", rtype: str = "dataset") -> list:
    """The commits of ``rev``, newest first."""
    repo = hub.repos[(rtype, repo_id)]
    out, commit = [], repo.resolve(rev)
    while commit is not None:
        out.append(commit)
        commit = repo.commits.get(commit.parent) if commit.parent else None
    return out


def test_data_and_card_go_in_one_commit(hub, clean, protected, protector):
    """No revision of the repo holds the images without the card that says they are protected."""
    result = push_protected(protected.select(range(10)), "alice/one-commit", clean=clean.select(range(10)),
                            protector=protector, progress=False)
    head, initial = _history(hub, "alice/one-commit")  # the repo's first commit, then ours: nothing between
    assert initial.title == "initial commit" and result.commit_url.endswith(head.oid)
    assert any(f.endswith(".parquet") for f in head.files) and CARD_KEY in head.files["README.md"].data.decode()
    push_protected(protected.select(range(10, 16)), "alice/one-commit", split="test", clean=clean.select(range(10, 16)),
                   protector=protector, progress=False)
    second = _history(hub, "alice/one-commit")[0]
    assert len(_history(hub, "alice/one-commit")) == 3 and second.parent == head.oid
    card = DatasetCard(second.files["README.md"].data.decode())
    assert set(card.data[CARD_KEY]["splits"]) == {"train", "test"}
    assert {s["name"] for s in card.data["dataset_info"]["splits"]} == {"train", "test"}


def test_a_smaller_push_of_a_split_removes_its_older_shards(hub, clean, protected, protector, tmp_path):
    push_protected(protected, "alice/reshard", clean=clean, protector=protector, max_shard_size="20KB",
                   progress=False)
    assert len([f for f in _repo_files(hub, "alice/reshard") if f.startswith("data/train-")]) > 1
    push_protected(protected.select(range(5)), "alice/reshard", clean=clean.select(range(5)), protector=protector,
                   progress=False)
    assert [f for f in _repo_files(hub, "alice/reshard") if f.endswith(".parquet")] == [
        "data/train-00000-of-00001.parquet"]
    back = datasets.load_dataset("alice/reshard", split="train", cache_dir=str(tmp_path / "c"))
    assert len(back) == 5 and all(np.array_equal(a, b) for a, b in zip(_arrays(back), _arrays(protected)))


def test_card_metadata_is_standard_and_copies_the_source_task(hub, clean, protected, protector):
    api = HfApi()
    api.create_repo("alice/pets-source", repo_type="dataset")
    source_card = DatasetCard(f"---\n{DatasetCardData(pretty_name='My pets', task_categories=['image-classification'], license='cc-by-4.0').to_yaml()}\n---\n# Pets\n")
    api.upload_file(path_or_fileobj=str(source_card).encode(), path_in_repo="README.md", repo_id="alice/pets-source",
                    repo_type="dataset")
    push_protected(protected.select(range(8)), "alice/pets-meta", clean=clean.select(range(8)), protector=protector,
                   source_dataset="alice/pets-source", progress=False)
    data = _card("alice/pets-meta").data
    assert isinstance(data, DatasetCardData)
    assert data.pretty_name == "My pets (protected)" and data.source_datasets == ["alice/pets-source"]
    assert data.task_categories == ["image-classification"] and data["tags"] == list(CARD_TAGS)
    assert data.license is None  # a license is the owner's statement: not copied
    assert data[CARD_KEY]["protected"] is True and data[CARD_KEY]["splits"]["train"]["n_images"] == 8
    # An explicit pretty name wins; a source that cannot be read is no error (nothing copied).
    push_protected(protected.select(range(8)), "alice/pets-meta2", clean=clean.select(range(8)), protector=protector,
                   source_dataset="bob/no-such-set", pretty_name="Garden pets", progress=False)
    data = _card("alice/pets-meta2").data
    assert data.pretty_name == "Garden pets" and data.task_categories is None
    assert data.source_datasets == ["bob/no-such-set"]


def test_save_to_disk_directories_get_the_same_card(hub, clean, protected, protector, tmp_path):
    sub_clean, sub_prot = clean.select(range(8)), protected.select(range(8))
    report = protected_report(sub_clean, sub_prot)
    d = tmp_path / "protected"
    sub_prot.save_to_disk(str(d))
    HfApi().create_repo("alice/local-source", repo_type="dataset")
    HfApi().upload_file(path_or_fileobj=b"---\ntask_categories:\n- image-classification\n---\n",
                        path_in_repo="README.md", repo_id="alice/local-source", repo_type="dataset")
    path = write_protected_card(d, protector, report, source_dataset="alice/local-source")
    assert path == d / "README.md"
    local = DatasetCard(path.read_text(encoding="utf-8"))
    push_protected(sub_prot, "alice/same-card", clean=sub_clean, protector=protector,
                   source_dataset="alice/local-source", progress=False)
    pushed = _card("alice/same-card")
    assert local.text == pushed.text  # the same protection section
    for key in ("source_datasets", "task_categories", "tags", CARD_KEY):
        assert local.data[key] == pushed.data[key], key
    assert local.data.pretty_name == "protected (protected)"
    assert "dataset_info" not in local.data  # the Hub layout's metadata belongs to the Hub push only
    assert np.array_equal(_arrays(datasets.load_from_disk(str(d))), _arrays(sub_prot))  # still a dataset directory
    # A second call keeps what the owner wrote and updates the record.
    path.write_text(path.read_text(encoding="utf-8") + "\n## Notes\n\nMine.\n", encoding="utf-8")
    write_protected_card(d, protector, {"test": report})
    again = DatasetCard(path.read_text(encoding="utf-8"))
    assert "Mine." in again.text and set(again.data[CARD_KEY]["splits"]) == {"train", "test"}
    assert again.text.count("If you found this dataset") == 1
    with pytest.raises(FileNotFoundError, match="save_to_disk"):
        write_protected_card(tmp_path / "missing", protector, report)


def test_progress_follows_huggingface_hub_unless_given(hub, clean, protected, protector, capfd):
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    sub_clean, sub_prot = clean.select(range(4)), protected.select(range(4))
    disable_progress_bars()
    try:
        push_protected(sub_prot, "alice/quiet", clean=sub_clean, protector=protector)
        quiet = capfd.readouterr().err
        push_protected(sub_prot, "alice/quiet", clean=sub_clean, protector=protector, progress=True)
        loud = capfd.readouterr().err
    finally:
        enable_progress_bars()
    assert "Uploading train shards" not in quiet and "verify" not in quiet.lower()
    assert "Uploading train shards" in loud and "verifying" in loud


# ---------------------------------------------------------------------------- refusals
def test_refuses_unprotected_and_out_of_bound_images(hub, clean, protected, protector):
    clean_rows = clean.select(range(10))

    def damage(batch, idx):
        out = []
        for img, i, c in zip(batch["image"], idx, clean_rows.select(idx)["image"]):
            if i == 3:
                out.append(Image.fromarray(np.asarray(c)))  # left unprotected
            elif i == 5:  # over the bound
                out.append(Image.fromarray(np.clip(np.asarray(img).astype(int) + 20, 0, 255).astype(np.uint8)))
            else:
                out.append(Image.fromarray(np.asarray(img)))
        return {"image": out}

    broken = protected.select(range(10)).map(damage, batched=True, with_indices=True)
    with pytest.raises(ProtectionCheckError, match=r"(?s)row 5 \(deviation \d+ > 8 levels\).*unprotected.*row 3") \
            as err:
        push_protected(broken, "alice/broken", clean=clean_rows, protector=protector, progress=False)
    assert not err.value.reports["train"].passed
    assert ("dataset", "alice/broken") not in hub.repos  # nothing was pushed, not even the repo


def test_refuses_protector_columns_and_files(hub, clean, protected, protector, tmp_path):
    sub_clean, sub_prot = clean.select(range(6)), protected.select(range(6))
    with pytest.raises(ProtectorLeakError, match=r"uc_cluster.*remove_columns"):
        push_protected(sub_prot.add_column("uc_cluster", [0] * 6), "alice/leak", clean=sub_clean,
                       protector=protector, progress=False)
    # A dataset saved in the same directory as its protector.
    d = tmp_path / "saved"
    sub_prot.save_to_disk(str(d))
    protector.save_pretrained(d)
    with pytest.raises(ProtectorLeakError, match="stored next to a protector"):
        push_protected(datasets.load_from_disk(str(d)), "alice/leak", clean=sub_clean, protector=protector,
                       progress=False)
    # A target repo that already holds a protector file.
    api = HfApi()
    api.create_repo("alice/leak", repo_type="dataset")
    api.upload_file(path_or_fileobj=str(d / "protector.safetensors"), path_in_repo="protector/protector.safetensors",
                    repo_id="alice/leak", repo_type="dataset")
    with pytest.raises(ProtectorLeakError, match="already holds protector file"):
        push_protected(sub_prot, "alice/leak", clean=sub_clean, protector=protector, progress=False)
    assert not any(f.endswith(".parquet") for f in _repo_files(hub, "alice/leak"))


# ---------------------------------------------------------------------------- protector repos
def test_protector_private_push_and_load_identical(hub, clean, protector):
    protector.push_to_hub("alice/pets-protector")
    repo = hub.repos[("model", "alice/pets-protector")]
    assert repo.private
    assert {"config.json", "protector.safetensors"} <= set(repo.resolve("main").files)
    with pytest.raises(RepositoryNotFoundError):  # privacy is real: others and anonymous users see nothing
        HfApi(token=BOB_TOKEN).model_info("alice/pets-protector")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info("alice/pets-protector")
    with pytest.raises(FileNotFoundError, match="neither a local protector directory nor a Hub model repo"):
        load_protector("alice/pets-protector", token=BOB_TOKEN)

    loaded = load_protector("alice/pets-protector")
    assert torch.equal(loaded.deltas, protector.deltas)
    assert np.array_equal(loaded.centres, protector.centres)
    fit_imgs, new_imgs = list(clean.select(range(8))["image"]), _images(4, seed=99)  # cache and surrogate paths
    for imgs in (fit_imgs, new_imgs):
        a, b = loaded.protect_images(imgs), protector.protect_images(imgs)
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))



def test_from_pretrained_takes_a_hub_repo_id_like_load_protector(hub, protector):
    from uc_datasets import UCProtector
    from uc_datasets.methods.baseline import BaselineProtector

    protector.push_to_hub("alice/from-pretrained")
    with pytest.raises(FileNotFoundError, match="neither a local protector directory nor a Hub model repo"):
        UCProtector.from_pretrained("alice/from-pretrained", token=BOB_TOKEN)  # private: bob cannot read it
    loaded = UCProtector.from_pretrained("alice/from-pretrained")
    assert type(loaded) is UCProtector and torch.equal(loaded.deltas, protector.deltas)
    with pytest.raises(ValueError, match="not a baseline protector"):  # the class must match what was saved
        BaselineProtector.from_pretrained("alice/from-pretrained")

def test_push_to_hub_returns_the_commit_info_and_takes_mixin_keywords(hub, protector, tmp_path):
    """huggingface_hub.ModelHubMixin's conventions: CommitInfo back, branch/create_pr, and from_pretrained's
    revision, cache_dir, force_download, local_files_only and token."""
    commit = protector.push_to_hub("alice/mixin-protector")
    assert isinstance(commit, CommitInfo) and commit.oid == _history(hub, "alice/mixin-protector", rtype="model")[0].oid
    assert commit.commit_url.endswith(commit.oid) and commit.pr_url is None
    card = hub.repos[("model", "alice/mixin-protector")].resolve("main").files["README.md"].data.decode()
    assert "keep this repository private" in card and "library_name: uc-datasets" in card

    other = load_protector("alice/mixin-protector")
    other.config.epsilon = EPS / 2  # a different protector on a branch: revision must pick the right one
    other.deltas = other.deltas / 2
    on_branch = other.push_to_hub("alice/mixin-protector", branch="half")
    assert hub.repos[("model", "alice/mixin-protector")].resolve("half").oid == on_branch.oid
    assert torch.equal(load_protector("alice/mixin-protector", revision="half").deltas, other.deltas)
    assert torch.equal(load_protector("alice/mixin-protector", revision=commit.oid).deltas, protector.deltas)
    pr = protector.push_to_hub("alice/mixin-protector", create_pr=True, commit_message="a PR")
    assert pr.pr_url and pr.pr_url.endswith("/discussions/1") and pr.pr_revision == "refs/pr/1"

    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="local_files_only"):  # nothing cached yet, and no request made
        load_protector("alice/mixin-protector", cache_dir=cache, local_files_only=True)
    n = len(hub.requests)
    first = UCProtector.from_pretrained("alice/mixin-protector", cache_dir=cache, token=TOKEN)
    assert any("/resolve/" in r and "protector.safetensors" in r and r.startswith("GET") for r in hub.requests[n:])
    assert list(cache.glob("models--alice--mixin-protector/snapshots/*/protector.safetensors"))
    n = len(hub.requests)
    offline = load_protector("alice/mixin-protector", cache_dir=cache, local_files_only=True)
    assert hub.requests[n:] == [] and torch.equal(offline.deltas, first.deltas)
    load_protector("alice/mixin-protector", cache_dir=cache)
    assert not any(r.startswith("GET") and "protector.safetensors" in r for r in hub.requests[n:])  # cached
    n = len(hub.requests)
    load_protector("alice/mixin-protector", cache_dir=cache, force_download=True)
    assert any(r.startswith("GET") and "protector.safetensors" in r for r in hub.requests[n:])
    # Bob cannot read the private repo (the filled cache above is local files, which huggingface_hub serves
    # when the Hub refuses, so he gets an empty one).
    with pytest.raises(FileNotFoundError, match="neither a local protector directory"):
        UCProtector.from_pretrained("alice/mixin-protector", cache_dir=tmp_path / "bob", token=BOB_TOKEN)


def test_save_pretrained_can_push_like_the_mixin(hub, protector, tmp_path):
    d = tmp_path / "pets-protector"
    assert protector.save_pretrained(d) is None  # as ModelHubMixin: nothing to return without a push
    commit = protector.save_pretrained(d, push_to_hub=True, repo_id="alice/saved-and-pushed")
    assert isinstance(commit, CommitInfo) and hub.repos[("model", "alice/saved-and-pushed")].private
    assert torch.equal(load_protector("alice/saved-and-pushed").deltas, load_protector(d).deltas)
    protector.save_pretrained(tmp_path / "by-folder-name", push_to_hub=True)  # repo_id: the folder's name
    assert hub.repos[("model", "alice/by-folder-name")].private
    with pytest.raises(PublicProtectorError):  # the guard holds on this path too, before anything is pushed
        protector.save_pretrained(tmp_path / "p2", push_to_hub=True, repo_id="alice/p2", private=False)
    assert ("model", "alice/p2") not in hub.repos


def test_a_wrong_token_when_loading_says_to_check_the_token(hub, protector):
    from uc_datasets.core.protector_hub import HUB_TOKEN_HINT, HubAuthError

    protector.push_to_hub("alice/auth-protector")
    with pytest.raises(HubAuthError, match="401") as err:
        load_protector("alice/auth-protector", token=TOKEN + "x")
    assert str(err.value).endswith(HUB_TOKEN_HINT) and TOKEN not in str(err.value)


def test_public_protector_push_is_refused(hub, protector):
    with pytest.raises(PublicProtectorError, match=r"(?s)public.*secret.*undo the protection.*allow_public=True"):
        protector.push_to_hub("alice/public-protector", private=False)
    assert ("model", "alice/public-protector") not in hub.repos
    HfApi().create_repo("alice/already-public", repo_type="model", private=False)
    with pytest.raises(PublicProtectorError, match="already exists and is public"):
        protector.push_to_hub("alice/already-public")
    assert not any(f.endswith(".safetensors") for f in _repo_files(hub, "alice/already-public", rtype="model"))


def test_explicit_public_override(hub, protector, caplog):
    with caplog.at_level(logging.WARNING, logger="uc_datasets.hub"):
        protector.push_to_hub("alice/opted-public", private=False, allow_public=True)
    assert not hub.repos[("model", "alice/opted-public")].private
    assert "PUBLIC" in caplog.text


# ---------------------------------------------------------------------------- tokens and CLI
def test_token_never_appears_in_logs_errors_card_or_summary(hub, clean, protected, protector, tmp_path, caplog,
                                                              capsys):
    sub_clean, sub_prot = clean.select(range(8)), protected.select(range(8))
    clean_dir, prot_dir, prot_path, out = (tmp_path / "clean", tmp_path / "prot", tmp_path / "protector",
                                           tmp_path / "out")
    sub_clean.save_to_disk(str(clean_dir))
    sub_prot.save_to_disk(str(prot_dir))
    protector.save_pretrained(prot_path)
    out.mkdir()
    (out / "run_summary.json").write_text(json.dumps({"method": "UC-CLIP"}))
    parser = add_push_arguments(argparse.ArgumentParser())
    errors = []
    with caplog.at_level(logging.DEBUG):
        assert run_push(parser.parse_args([str(prot_dir), "alice/tok", "--clean", str(clean_dir), "--protector",
                                           str(prot_path), "--token", TOKEN, "--output-dir", str(out)])) == 0
        push_protected(sub_prot, "alice/tok", split="test", clean=sub_clean, protector=protector, token=TOKEN,
                       progress=False)
        for call in (
            lambda: push_protected(sub_prot, "bob/not-yours", clean=sub_clean, protector=protector, token=TOKEN,
                                   progress=False),
            lambda: push_protected(sub_prot, "alice/tok", clean=sub_clean, protector=protector,
                                   token=TOKEN + "x", progress=False),
            lambda: protector.push_to_hub("alice/tok-prot", private=False, token=TOKEN),
            lambda: push_protected(sub_clean, "alice/tok", clean=sub_clean, protector=protector, token=TOKEN,
                                   progress=False),  # nothing protected: refused by verify
        ):
            with pytest.raises((HfHubHTTPError, ValueError, PermissionError, RuntimeError)) as err:
                call()
            errors.append(f"{err.value!r} {err.value} {err.getrepr()}")
    summary = (out / "run_summary.json").read_text()
    assert json.loads(summary)["push"]["repo_id"] == "alice/tok" and json.loads(summary)["method"] == "UC-CLIP"
    card = str(_card("alice/tok"))
    captured = capsys.readouterr()
    assert "| `test` |" in card and "| `train` |" in card
    for where, text in {"logs": caplog.text, "errors": "\n".join(errors), "card": card, "run_summary.json": summary,
                        "stdout/stderr": captured.out + captured.err, "server log": hub.log_text(10_000)}.items():
        assert TOKEN not in text, f"the token leaked into {where}"
    assert "alice/tok" in caplog.text  # the logs were captured at all


def test_argument_errors_come_before_any_request(clean, protected, protector):
    with pytest.raises(ValueError, match="without a protector, pass epsilon"):
        push_protected(protected, "alice/x", clean=clean, progress=False)
    with pytest.raises(ValueError, match="differ from the protector"):
        push_protected(protected, "alice/x", clean=clean, protector=protector, epsilon=16 / 255, progress=False)
    with pytest.raises(ValueError, match="splits"):
        push_protected(datasets.DatasetDict({"train": protected}), "alice/x",
                       clean=datasets.DatasetDict({"test": clean}), protector=protector, progress=False)


def test_hub_environment_restores_what_it_patched(tmp_path):
    import socket

    import datasets.config as dconfig
    from huggingface_hub import constants

    before = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, dconfig.HF_ENDPOINT,
              dconfig.HF_HUB_OFFLINE, socket.getaddrinfo, os.environ.get("HF_TOKEN"), os.environ.get("HF_ENDPOINT"))
    with HubServer({}) as server, hub_environment(server, "hf_x", tmp_path):
        assert constants.ENDPOINT == dconfig.HF_ENDPOINT == server.url and os.environ["HF_TOKEN"] == "hf_x"
        with pytest.raises(OSError, match="blocked"):
            socket.getaddrinfo("huggingface.co", 443)
        assert server.outside == ["huggingface.co"]
    after = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, dconfig.HF_ENDPOINT,
             dconfig.HF_HUB_OFFLINE, socket.getaddrinfo, os.environ.get("HF_TOKEN"), os.environ.get("HF_ENDPOINT"))
    assert after == before


def test_recipe_push_to_hub_flag(hub, clean, tiny_clip, tmp_path, capsys):
    """`recipes/protect.py --push-to-hub` (via the function the recipe calls): verified, private, carded."""
    from uc_datasets.commands.cli import (
        add_fit_arguments,
        add_recipe_arguments,
        run_protect,
    )

    clean.select(range(12)).save_to_disk(str(tmp_path / "in"))
    parser = argparse.ArgumentParser()
    add_fit_arguments(parser)
    add_recipe_arguments(parser)
    args = parser.parse_args([str(tmp_path / "in"), "--surrogate", tiny_clip, "--n-clusters", "3", "--epsilon", "8",
                              "--epochs", "1", "--batch-size", "8", "--output-dir", str(tmp_path / "out"),
                              "--push-to-hub", "alice/from-recipe"])
    assert run_protect(args) == 0
    assert hub.repos[("dataset", "alice/from-recipe")].private
    files = _repo_files(hub, "alice/from-recipe")
    assert not any("protector" in f or "cluster" in f or "checkpoint" in f for f in files)
    assert "Protected images" in str(_card("alice/from-recipe"))
    summary = (tmp_path / "out" / "run_summary.json").read_text()
    assert json.loads(summary)["push"]["repo_id"] == "alice/from-recipe" and TOKEN not in summary
    assert "pushed" in capsys.readouterr().out


# ---------------------------------------------------------------------------- defaults and command-line errors
def test_private_is_the_default_in_python_and_on_the_command_line(hub, clean, protected, protector, tmp_path):
    from uc_datasets.commands.cli import main

    sub_clean, sub_prot = clean.select(range(6)), protected.select(range(6))
    push_protected(sub_prot, "alice/default-private", clean=sub_clean, protector=protector, progress=False)
    assert hub.repos[("dataset", "alice/default-private")].private
    sub_clean.save_to_disk(str(tmp_path / "c"))
    sub_prot.save_to_disk(str(tmp_path / "p"))
    protector.save_pretrained(tmp_path / "prot")
    base = ["push", str(tmp_path / "p"), "--clean", str(tmp_path / "c"), "--protector", str(tmp_path / "prot")]
    assert main([*base[:2], "alice/cli-private", *base[2:]]) == 0
    assert hub.repos[("dataset", "alice/cli-private")].private
    assert main([*base[:2], "alice/cli-public", *base[2:], "--no-private"]) == 0
    assert not hub.repos[("dataset", "alice/cli-public")].private


def test_a_wrong_token_on_the_command_line_is_one_error_line(hub, clean, protected, protector, tmp_path, capsys):
    from uc_datasets.commands.cli import main

    clean.select(range(6)).save_to_disk(str(tmp_path / "c"))
    protected.select(range(6)).save_to_disk(str(tmp_path / "p"))
    protector.save_pretrained(tmp_path / "prot")
    rc = main(["push", str(tmp_path / "p"), "alice/wrong-token", "--clean", str(tmp_path / "c"), "--protector",
               str(tmp_path / "prot"), "--token", TOKEN + "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "error: Client error '401 Unauthorized'" in err
    assert "hint: check the Hub token (--token or HF_TOKEN)" in err and TOKEN not in err


def test_a_wrong_token_is_the_same_error_in_python_and_with_or_without_v(hub, clean, protected, protector, tmp_path,
                                                                           capsys):
    from uc_datasets.commands.cli import main
    from uc_datasets.core.protector_hub import HUB_TOKEN_HINT, HubAuthError

    with pytest.raises(HubAuthError, match="401") as err:
        push_protected(protected.select(range(4)), "alice/wrong-py", clean=clean.select(range(4)),
                       protector=protector, token=TOKEN + "x", progress=False)
    assert str(err.value).endswith(f"hint: {HUB_TOKEN_HINT}") and TOKEN not in str(err.value)
    clean.select(range(4)).save_to_disk(str(tmp_path / "c"))
    protected.select(range(4)).save_to_disk(str(tmp_path / "p"))
    argv = ["push", str(tmp_path / "p"), "alice/wrong-v", "--clean", str(tmp_path / "c"), "--protector",
            str(tmp_path / "prot"), "--token", TOKEN + "x"]
    protector.save_pretrained(tmp_path / "prot")
    codes = []
    for verbose in ([], ["-v"]):
        codes.append(main(verbose + argv))
        err_text = capsys.readouterr().err
        assert f"hint: {HUB_TOKEN_HINT}" in err_text and TOKEN not in err_text
    assert codes == [2, 2]


def test_the_card_says_which_modes_were_converted():
    text = render_card_section({"train": {"method": "UC", "surrogate": "s", "epsilon": 8 / 255, "epsilon_levels": 8,
                                          "n_clusters": 4, "uc_datasets_version": "0", "verify": "PASSED"}})
    assert "original size and mode" not in text
    assert "palette (P) images were converted to RGB" in text and "1-bit images to grey (L)" in text


def test_a_grey_rgb_mix_cast_to_rgb_is_pushed(hub, protector):
    imgs = [im.convert("L") if i % 2 else im for i, im in enumerate(_images(6, 5))]
    mixed = datasets.Dataset.from_dict({"image": imgs}).cast_column("image", datasets.Image(mode="RGB"))
    result = push_protected(mixed.map(protector, batched=True), "alice/mixed-modes", clean=mixed, protector=protector,
                            progress=False)
    assert result.splits["train"]["passed"] and not result.splits["train"]["violations"]
