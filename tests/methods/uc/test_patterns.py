"""The drawn patterns (uc_datasets.methods.uc.patterns), and every family and the label-aware mode through the protector contract."""

import math
import pickle

import datasets
import numpy as np
import pytest
import torch

from tests.conftest import FAST_FIT, structured_images
from uc_datasets import UnlearnableClusters, load_protector, verify
from uc_datasets.methods.uc.fit import needs_surrogate
from uc_datasets.methods.uc.patterns import (
    ar_patterns,
    block_patterns,
    code_tiles,
    shift_similarity,
    tile_patterns,
    tile_to,
    wave_patterns,
)

#: A few seconds of keyed min-min crafting (the contract, not the strength).
TINY_EM = {"rounds": 2, "train_steps": 2, "batch_size": 20, "model_width": 0.0625}
#: A second of unrolled crafting (the contract, not the strength).
TINY_UNROLLED = {"rounds": 2, "horizon": 2, "batch_size": 8, "val_batch_size": 8, "width": 4}
# one full-size step: the residual reaches its budget, so the sum reaches epsilon
TINY_CP = {"rounds": 1, "train_steps": 1, "batch_size": 20, "model_width": 0.0625, "step_size": 1.0}


def _arrays(ds):
    return [np.asarray(r["image"]) for r in ds]


# --- the pattern functions ------------------------------------------------------------------


def test_tile_is_periodic_and_binary():
    p = tile_patterns(5, (12, 10), period=4, channels=3, seed=0)
    assert p.shape == (5, 3, 12, 10) and set(p.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(p[..., 0:4, 0:4], p[..., 4:8, 4:8]) and torch.equal(p[..., :8, 0:2], p[..., :8, 4:6])
    assert not torch.equal(p[0], p[1])  # one pattern per key


def test_block_is_constant_on_blocks():
    b = block_patterns(3, (8, 8), block=4, seed=1)
    for i in (0, 4):
        for j in (0, 4):
            blk = b[:, :, i : i + 4, j : j + 4]
            assert torch.equal(blk, blk[:, :, :1, :1].expand_as(blk))


def test_ar_textures_are_reproducible_from_the_seed_and_bounded():
    a = ar_patterns(4, (16, 16), channels=3, seed=7)
    assert torch.equal(a, ar_patterns(4, (16, 16), channels=3, seed=7))
    assert not torch.equal(a, ar_patterns(4, (16, 16), channels=3, seed=8))
    assert float(a.abs().max()) <= 1.0 and float(a.std()) > 0.3  # uses the budget, not a faint texture
    # each key has its own process: neighbouring-pixel correlations differ between keys
    corr = [float(torch.corrcoef(torch.stack([k[0, :, :-1].flatten(), k[0, :, 1:].flatten()]))[0, 1]) for k in a]
    assert max(corr) - min(corr) > 0.05


def test_code_tiles_stay_further_apart_under_shifts_and_flips_than_random_draws():
    """The designed code's closest pair (best shift/flip correlation) beats every one of 20 random draws."""
    for n, period in ((10, 4), (5, 4), (16, 6)):
        code = float(shift_similarity(code_tiles(n, period=period, seed=0)).fill_diagonal_(-1).max())
        random_best = min(float(shift_similarity(tile_patterns(n, (period, period), period=period, seed=s))
                                .fill_diagonal_(-1).max()) for s in range(20))
        assert code < random_best, (n, period, code, random_best)
    assert torch.equal(code_tiles(6, seed=3), code_tiles(6, seed=3))
    assert set(code_tiles(6, seed=3).unique().tolist()) == {-1.0, 1.0}


def _block_dct_low_share(x: torch.Tensor) -> float:
    """Share of a pattern's energy in the 3 x 3 lowest DCT frequencies of its 8 x 8 blocks (what JPEG-10 keeps)."""
    n = 8
    k = torch.arange(n, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n))  # (freq, pos)
    blocks = x.double().unfold(-2, n, n).unfold(-2, n, n)  # (..., bh, bw, 8, 8)
    coef = basis @ blocks @ basis.T
    return float((coef[..., :3, :3] ** 2).sum() / (coef ** 2).sum())


def test_wave_patterns_keep_their_energy_where_jpeg_keeps_it():
    w = wave_patterns(4, (32, 32), seed=0)
    t = tile_patterns(4, (32, 32), period=4, seed=0)
    assert float(w.abs().mean()) > 0.6  # spends most of the budget
    assert _block_dct_low_share(w) > 0.8 > 0.2 > _block_dct_low_share(t)
    blur = torch.nn.functional.avg_pool2d(w, 3, 1, 1, count_include_pad=False)
    assert float((blur - w).abs().mean()) < 0.15  # smoothing barely changes it


def test_shift_similarity_sees_shifts_and_flips():
    t = tile_patterns(1, (4, 4), period=4, seed=2)
    views = torch.cat([t, t.roll(1, -1), t.roll((2, 3), (-2, -1)).flip(-1), -t])
    sim = shift_similarity(views)
    assert torch.allclose(sim[0, 1:3], torch.ones(2)) and float(sim[0, 3]) < 1


def test_tile_to_any_size():
    assert tile_to(torch.arange(4.0).view(2, 2), (3, 5)).tolist() == [[0, 1, 0, 1, 0], [2, 3, 2, 3, 2], [0, 1, 0, 1, 0]]


# --- the protector contract for every family and both modes --------------------------------

FAMILY_CASES = [
    ("tile", False, {}),
    ("tile", True, {"levels": (2,), "level_source": "features"}),
    ("ar", True, {}),
    ("block", False, {"period": 3}),
    ("block", True, {}),  # the label-aware default (LABEL_AWARE_DEFAULTS)
    ("periodic-generator", True, {"augment_mode": "shifts"}),
    ("generator", False, {"augment_mode": "shifts"}),
    ("tile-code", True, {"levels": (2,), "level_source": "features"}),
    ("wave", True, {}),
    ("error-min", True, {"error_min": TINY_EM}),
    ("error-min", False, {"error_min": {**TINY_EM, "augment": "none"}}),
    ("tile+error-min", True, {"levels": (2,), "level_source": "features", "error_min": TINY_EM}),
    ("tile", True, {"contrastive_share": 0.25, "contrastive": TINY_CP}),
    ("wave", False, {"contrastive_share": 0.25, "contrastive": TINY_CP, "phase": "per-image"}),
    ("class-mean", True, {}),
    ("class-mean", True, {"options": {"target": "derangement", "block_share": 0.25}}),
    ("class-mean", False, {"options": {"target": "nearest"}}),
    ("unrolled", True, {"options": TINY_UNROLLED}),
    ("unrolled", True, {"levels": (2,), "level_source": "features", "options": {**TINY_UNROLLED, "init": "class-mean"}}),
]


@pytest.fixture(scope="module")
def labelled40():
    # labels cut across the four visual groups of structured_images (group = i % 4)
    return datasets.Dataset.from_dict({"image": structured_images(40), "label": [i % 3 for i in range(40)]}
                                      ).cast_column("image", datasets.Image())


@pytest.mark.parametrize("pattern,label_aware,extra", FAMILY_CASES,
                         ids=[f"{c[0]}-{'la' if c[1] else 'lf'}{'-contrastive' if 'contrastive' in c[2] else ''}"
                              for c in FAMILY_CASES])
def test_family_contract(pattern, label_aware, extra, tiny_clip, labelled40, tmp_path):
    from datasets.fingerprint import Hasher

    ds = labelled40
    prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "pattern": pattern, **extra}).fit(
        ds, label_column="label" if label_aware else None)
    # a label-aware fit with one key per class and no surrogate loss never loads the surrogate
    used = needs_surrogate(prot.config, prot.metadata["class_names"])
    assert prot.metadata["stats"]["surrogate_used"] is used
    expected = ("UC-CLIP" if used else "UC") + (" (label-aware)" if label_aware else "")
    assert prot.config.pattern == pattern and prot.method == expected
    batched = ds.map(prot, batched=True, load_from_cache_file=False)
    report = verify(ds, batched, 8 / 255, progress=False)
    # crafted noise starts at zero and a few-second fit need not reach the bound; drawn patterns use all of it
    crafted = "error-min" in pattern or pattern == "unrolled"
    assert report.passed and (report.max_deviation == 8 or crafted and report.max_deviation >= 1), \
        report.summary()
    single = ds.map(prot, load_from_cache_file=False)
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(batched), _arrays(single)))
    workers = ds.map(prot, batched=True, batch_size=10, num_proc=2, load_from_cache_file=False)
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(batched), _arrays(workers)))
    raw = batched.cast_column("image", datasets.Image(decode=False))
    assert all(r["image"]["bytes"].startswith(b"\x89PNG") for r in raw)
    prot.save_pretrained(tmp_path / "p")
    back = load_protector(tmp_path / "p")
    assert back.config == prot.config and back.method == prot.method
    again = ds.map(back, batched=True, load_from_cache_file=False)
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(batched), _arrays(again)))
    clone = pickle.loads(pickle.dumps(prot))
    assert Hasher.hash(clone) == Hasher.hash(prot) == Hasher.hash(back)


def test_periodic_families_are_tiled_at_native_size(tiny_clip, rgb40):
    prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "pattern": "tile", "period": 4}).fit(rgb40)
    big = structured_images(1, size=(37, 30), seed=5)[0]
    out = np.asarray(prot.protect_images([big])[0]).astype(int) - np.asarray(big).astype(int)
    inner = (np.asarray(big) > 8).all(-1) & (np.asarray(big) < 247).all(-1)  # no clipping at 0/255
    shifted = np.roll(out, -4, axis=1)[:, :-4]
    both = inner[:, :-4] & np.roll(inner, -4, axis=1)[:, :-4]
    assert (out[..., 0] != 0).mean() > 0.9 and np.array_equal(out[:, :-4][both], shifted[both])


# --- label-aware keys ----------------------------------------------------------------------


def test_label_aware_keys_refine_every_class(tiny_clip, labelled40):
    prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "pattern": "tile", "clusters_per_class": 3}).fit(
        labelled40, label_column="label")
    labels = np.asarray(labelled40["label"])
    assert prot.config.n_clusters == 9 and prot.classes == [0, 1, 2]
    for k in range(prot.config.n_clusters):
        members = labels[prot.cache_clusters == k]
        assert len(members) > 0 and set(members.tolist()) == {prot.classes[prot.cluster_class[k]]}
    # unseen images are assigned within the class they are mapped with
    new = structured_images(6, seed=42)
    for cls in (0, 2):
        got = prot.assign(new, labels=[cls] * 6)
        assert set(prot.cluster_class[got].tolist()) == {cls}


def test_label_aware_map_needs_the_label_column(tiny_clip, labelled40):
    prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "pattern": "tile"}).fit(labelled40,
                                                                                          label_column="label")
    with pytest.raises(KeyError, match="needs the label column 'label'"):
        labelled40.remove_columns("label").map(prot, batched=True)
    with pytest.raises(ValueError, match="not among the 3 classes"):
        prot.protect_images([labelled40[0]["image"]], labels=[7])


def test_levels_follow_the_class_names(tiny_clip):
    names = ["apple", "banana", "cherry", "car", "truck", "bus"]
    imgs = structured_images(24)
    ds = datasets.Dataset.from_dict({"image": imgs, "label": [i % 6 for i in range(24)]}).cast_column(
        "image", datasets.Image()).cast_column("label", datasets.ClassLabel(names=names))
    prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "pattern": "tile", "levels": (2,),
                                                       "name_encoder": "offline"}).fit(ds, label_column="label")
    (level,) = prot.metadata["key_levels"]
    assert prot.metadata["class_names"] == names
    assert level[0] == level[1] == level[2] != level[3] == level[4] == level[5]  # fruit vs. vehicles


def test_config_refuses_bad_family_settings():
    with pytest.raises(ValueError, match="pattern must be one of"):
        UnlearnableClusters(pattern="stripes")
    with pytest.raises(ValueError, match="built for the families that draw or craft"):
        UnlearnableClusters(pattern="generator", levels=(2,))
    with pytest.raises(ValueError, match="level_shares must give one positive share"):
        UnlearnableClusters(pattern="tile", levels=(2,), level_shares=(0.5, 0.6))
    with pytest.raises(ValueError, match="must each be >= 2"):
        UnlearnableClusters(pattern="tile", levels=(1,))


# --- the sample-wise contrastive residual -------------------------------------------------


def test_the_contrastive_residual_is_per_fit_image_and_unseen_images_get_the_class_part(tiny_clip, labelled40,
                                                                                         caplog):
    cfg = {**FAST_FIT, "pattern": "tile", "contrastive_share": 0.25, "contrastive": TINY_CP}
    prot = UnlearnableClusters(surrogate=tiny_clip, **cfg).fit(labelled40, label_column="label")
    plain = UnlearnableClusters(surrogate=tiny_clip, **{**cfg, "contrastive_share": 0.0}).fit(
        labelled40, label_column="label")
    r = prot.sample_residual
    assert r.dtype == torch.int8 and r.shape[0] == len(prot.cache_keys) == 40 and int(r.abs().max()) == 2
    # the class-wise tile keeps 6 of the 8 levels; a fit image gets tile + its own residual
    img, label = labelled40[0]["image"], labelled40[0]["label"]
    (d,) = prot.perturbations_for([img], labels=[label])
    assert round(float(prot.deltas.abs().max()) * 255) == 6 and round(float(d.abs().max()) * 255) == 8
    new = structured_images(1, seed=77)[0]
    with caplog.at_level("WARNING"):
        (d_new,) = prot.perturbations_for([new], labels=[label])
    assert "not in the fit set" in caplog.text
    assert torch.allclose(d_new, prot.perturbations_for([img], labels=[label])[0] - prot.residuals_for([img])[0],
                          atol=1e-6)
    assert plain.sample_residual is None and round(float(plain.deltas.abs().max()) * 255) == 8


def test_an_inconsistent_contrastive_residual_is_refused(tiny_clip, labelled40, tmp_path):
    from safetensors.torch import load_file, save_file

    cfg = {**FAST_FIT, "pattern": "tile", "contrastive_share": 0.25, "contrastive": TINY_CP}
    prot = UnlearnableClusters(surrogate=tiny_clip, **cfg).fit(labelled40, label_column="label")
    prot.save_pretrained(tmp_path / "p")
    tensors = load_file(tmp_path / "p" / "protector.safetensors")
    tensors["sample_residual"] = tensors["sample_residual"] * 3  # 6 levels, above the residual's 2
    save_file(tensors, tmp_path / "p" / "protector.safetensors")
    with pytest.raises(ValueError, match="exceeds its 2/255 budget"):
        load_protector(tmp_path / "p")
    del tensors["sample_residual"]
    save_file(tensors, tmp_path / "p" / "protector.safetensors")
    with pytest.raises(ValueError, match="residual is missing"):
        load_protector(tmp_path / "p")


@pytest.mark.parametrize("bad,match", [
    ({"pattern": "generator", "contrastive_share": 0.25}, "trains its perturbations against the surrogate"),
    ({"pattern": "tile", "contrastive_share": 1.0}, "contrastive_share is the sample-wise"),
    ({"pattern": "tile", "contrastive_share": True}, "contrastive_share is the sample-wise"),
    ({"pattern": "tile", "contrastive_share": 0.5, "contrastive": {"epochs": 3}}, "unknown contrastive settings"),
    ({"pattern": "tile", "contrastive_share": 0.5, "epsilon": 1 / 255}, "needs epsilon >= 2/255"),
])
def test_bad_contrastive_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        UnlearnableClusters(**bad)


def test_levels_with_as_many_groups_as_classes_are_left_out_with_a_warning(tiny_clip, labelled40, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        prot = UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "pattern": "block", "levels": (5, 2)}).fit(
            labelled40, label_column="label")  # 3 classes: a level of 5 groups groups nothing
    assert prot.config.levels == (2,) and "using levels=(2,)" in caplog.text
    assert len(prot.metadata["key_levels"]) == 1
    with pytest.raises(ValueError, match="level_shares"):  # shares written for the dropped level: refused
        UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "pattern": "block", "levels": (5, 2),
                                                    "level_shares": (0.5, 0.25, 0.25)}).fit(labelled40,
                                                                                            label_column="label")
