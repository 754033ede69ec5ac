"""The API contract of the core issue, on a tiny random CLIP and a 40-image dataset."""

import copy
import json
import pickle
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FAST_FIT, image_dataset, jpeg_bytes, structured_images
from uc_datasets import UnlearnableClusters, load_protector, verify
from uc_datasets.core.protector import SurrogateMismatchError
from uc_datasets.methods.uc.clustering import assign
from uc_datasets.methods.uc.protector import UCProtector


def _arrays(ds):
    return [np.asarray(r["image"]) for r in ds]


def test_contract_fit_map_verify(fitted):
    ds, prot = fitted
    assert isinstance(prot, UCProtector) and prot.method == "UC-CLIP"
    protected = ds.map(prot, batched=True)
    report = verify(ds, protected, 8 / 255, progress=False)
    assert report.passed, report.summary()
    assert report.max_deviation == 8 and report.fraction_changed > 0.5
    assert protected["label"] == ds["label"]
    # unbatched map gives the same images
    single = ds.map(prot)
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(protected), _arrays(single)))


def test_images_seen_during_fit_get_their_kmeans_cluster(fitted):
    ds, prot = fitted
    fit_labels = prot.cache_clusters
    imgs = [r["image"] for r in ds]
    cached = prot.assign(imgs)
    prot.use_cache = False
    try:
        recomputed = prot.assign(imgs)  # through the surrogate, as for unseen images
    finally:
        prot.use_cache = True
    assert np.array_equal(cached, fit_labels)
    assert np.array_equal(recomputed, fit_labels)


def test_unseen_images_get_the_nearest_centre(fitted):
    _, prot = fitted
    new = structured_images(8, seed=99)
    feats = prot.features(new)
    assert np.array_equal(prot.assign(new), assign(feats, prot.centres))


def test_lossless_through_save_to_disk_and_parquet(fitted, tmp_path):
    ds, prot = fitted
    protected = ds.map(prot, batched=True)
    expected = _arrays(protected)
    protected.save_to_disk(str(tmp_path / "disk"))
    back = datasets.load_from_disk(str(tmp_path / "disk"))
    assert all(np.array_equal(a, b) for a, b in zip(expected, _arrays(back)))
    protected.to_parquet(str(tmp_path / "p.parquet"))
    pq = datasets.Dataset.from_parquet(str(tmp_path / "p.parquet"))
    assert all(np.array_equal(a, b) for a, b in zip(expected, _arrays(pq)))
    raw = protected.cast_column("image", datasets.Image(decode=False))
    assert all(r["image"]["bytes"].startswith(b"\x89PNG") for r in raw)


def test_jpeg_sources_are_stored_as_png(fitted):
    _, prot = fitted
    imgs = structured_images(6, seed=3)
    ds = datasets.Dataset.from_dict({"image": [{"bytes": jpeg_bytes(i), "path": None} for i in imgs]}).cast_column(
        "image", datasets.Image())
    assert ds[0]["image"].format == "JPEG"
    out = ds.map(prot, batched=True)
    raw = out.cast_column("image", datasets.Image(decode=False))
    assert all(r["image"]["bytes"].startswith(b"\x89PNG") for r in raw)
    assert verify(ds, out, 8 / 255, progress=False).passed


def test_native_size_and_mode_are_kept(fitted):
    _, prot = fitted
    rgb = structured_images(3, size=(50, 31))
    imgs = [*rgb, rgb[0].convert("L"), rgb[1].convert("RGBA"), rgb[2].convert("LA"), Image.new("RGB", (1, 1), 9),
            rgb[0].resize((300, 200))]
    ds = image_dataset(imgs)
    out = ds.map(prot, batched=True, batch_size=3)
    for a, b in zip(ds, out):
        assert (a["image"].size, a["image"].mode) == (b["image"].size, b["image"].mode)
    assert verify(ds, out, 8 / 255, progress=False).max_deviation <= 8


def test_save_load_gives_bit_identical_outputs(fitted, tmp_path):
    ds, prot = fitted
    prot.save_pretrained(tmp_path / "protector")
    files = sorted(p.name for p in (tmp_path / "protector").iterdir())
    assert files == ["config.json", "protector.safetensors"]
    loaded = load_protector(tmp_path / "protector")
    a = ds.map(prot, batched=True, load_from_cache_file=False)
    b = ds.map(loaded, batched=True, load_from_cache_file=False)
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))
    loaded.use_cache = False  # the reloaded surrogate assigns like the fitted one
    c = ds.map(loaded, batched=True, load_from_cache_file=False)
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(c)))
    cfg = json.loads((tmp_path / "protector" / "config.json").read_text())
    assert len(cfg["metadata"]["loss_curves"]) == 4  # per-cluster loss curves are kept


def test_loading_never_unpickles(fitted, tmp_path, monkeypatch):
    _, prot = fitted
    prot.save_pretrained(tmp_path / "p")

    def boom(*a, **k):
        raise AssertionError("unpickling during load")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(torch, "load", boom)
    load_protector(tmp_path / "p")


def test_loading_with_other_surrogate_weights_is_refused(fitted, tmp_path, tiny_clip_other):
    ds, prot = fitted
    prot.save_pretrained(tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    cfg["surrogate"]["name"] = tiny_clip_other  # same architecture, other weights
    (tmp_path / "p" / "config.json").write_text(json.dumps(cfg))
    loaded = load_protector(tmp_path / "p")
    with pytest.raises(SurrogateMismatchError, match="different weights"):
        loaded.assign(structured_images(2, seed=7))


def test_determinism_same_seed_same_protector(tiny_clip, rgb40, fitted):
    ds, prot = fitted
    again = UnlearnableClusters(surrogate=tiny_clip, **FAST_FIT).fit(rgb40)
    assert torch.equal(prot.deltas, again.deltas)
    assert np.array_equal(prot.centres, again.centres)
    # a refit with the same seed: same datasets fingerprint, although its timings differ
    from datasets.fingerprint import Hasher

    assert prot.metadata["stats"]["seconds"] != again.metadata["stats"]["seconds"]
    assert Hasher.hash(prot) == Hasher.hash(again)
    assert ds.map(prot, batched=True)._fingerprint == ds.map(again, batched=True)._fingerprint
    assert pickle.loads(pickle.dumps(again)).metadata == {}  # the metadata is not in the pickle
    assert copy.deepcopy(again).metadata == again.metadata  # but a copy keeps it
    other = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "seed": 1}).fit(rgb40)
    assert not torch.equal(prot.deltas, other.deltas)


def test_fingerprint_cheap_and_free_of_surrogate_weights(fitted):
    from datasets.fingerprint import Hasher

    _, prot = fitted
    assert prot._surrogate is not None
    blob = pickle.dumps(prot)
    assert len(blob) < 200_000  # deltas + centres + cache; the surrogate is not in it
    clone = pickle.loads(blob)
    assert clone._surrogate is None and torch.equal(clone.deltas, prot.deltas)
    assert Hasher.hash(prot) == Hasher.hash(clone)


def test_fingerprint_changes_with_epsilon_weights_and_version(fitted, monkeypatch):
    from datasets.fingerprint import Hasher

    import uc_datasets.core.protector as protector_mod

    _, prot = fitted
    h = Hasher.hash(prot)
    clone = pickle.loads(pickle.dumps(prot))
    clone.config.epsilon = 7 / 255
    assert Hasher.hash(clone) != h
    clone = pickle.loads(pickle.dumps(prot))
    clone.deltas = clone.deltas.clone()
    clone.deltas[0, 0, 0, 0] *= 0.5
    assert Hasher.hash(clone) != h
    clone = pickle.loads(pickle.dumps(prot))
    clone.surrogate_info["weights_sha256"] = "0" * 64
    assert Hasher.hash(clone) != h
    monkeypatch.setattr(protector_mod, "__version__", "9.9.9")
    assert Hasher.hash(UCProtector._from_parts(json.loads(json.dumps(prot._config_dict())), prot._tensors())) != h


def test_fingerprint_is_stable_across_fresh_processes(fitted, tmp_path):
    ds, prot = fitted
    prot.save_pretrained(tmp_path / "p")
    ds.save_to_disk(str(tmp_path / "ds"))
    script = textwrap.dedent(f"""
        import datasets
        from uc_datasets import load_protector
        ds = datasets.load_from_disk({str(tmp_path / 'ds')!r})
        out = ds.map(load_protector({str(tmp_path / 'p')!r}), batched=True)
        print(out._fingerprint, out.cache_files[0]["filename"])
    """)
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(2)]
    assert runs[0] == runs[1]  # same fingerprint, same cache file: the second map was a cache hit


def test_bad_column_in_map(fitted):
    ds, prot = fitted
    with pytest.raises(KeyError, match="set protector.image_column"):
        prot({"img": [ds[0]["image"]]})


def test_real_grey_digits_stay_grey_and_bounded(tiny_clip, digits_ds):
    prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "epochs": 1}).fit(digits_ds)
    assert prot.working_hw == (16, 16)
    out = digits_ds.map(prot, batched=True)
    assert {r["image"].mode for r in out} == {"L"}
    report = verify(digits_ds, out, 8 / 255, progress=False)
    assert report.passed and report.max_deviation == 8


def test_map_with_worker_processes_matches(fitted):
    ds, prot = fitted
    prot.use_cache = False  # workers must reload the surrogate and assign the same clusters
    try:
        a = ds.map(prot, batched=True, batch_size=10, load_from_cache_file=False)
        b = ds.map(prot, batched=True, batch_size=10, num_proc=2, load_from_cache_file=False)
    finally:
        prot.use_cache = True
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))
