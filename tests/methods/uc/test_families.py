"""The family registry (uc_datasets.methods.uc.families): one class a family, what each needs, and
how each perturbation reaches an image of another size than the working resolution."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FAST_FIT, structured_images
from uc_datasets import UnlearnableClusters, verify
from uc_datasets.methods.uc.config import FAMILIES, UCConfig
from uc_datasets.methods.uc.families import FAMILY_TYPES, get_family, tile_at_size
from uc_datasets.methods.uc.fit import needs_surrogate
from uc_datasets.methods.uc.patterns import tile_patterns


def test_the_light_family_names_are_the_registered_classes():
    assert tuple(FAMILY_TYPES) == FAMILIES
    assert all(cls.name == name for name, cls in FAMILY_TYPES.items())
    with pytest.raises(ValueError, match="unknown perturbation family 'stripes'"):
        get_family("stripes")


def test_drawn_levels_share_one_coarse_pattern_per_group():
    cfg = UCConfig(pattern="tile", levels=(2,), level_shares=(0.5, 0.5))
    fam = get_family("tile")(cfg)
    d = fam.combine([np.arange(4), np.array([0, 0, 1, 1])], (8, 8), channels=1)
    fine = tile_patterns(4, (8, 8), period=4, seed=0)
    coarse = tile_patterns(2, (8, 8), period=4, seed=1)  # level 1 draws from seed * 1000 + 1
    assert float(d.abs().max()) <= 1.0
    assert torch.allclose(d[1], 0.5 * fine[1] + 0.5 * coarse[0]) and torch.allclose(d[2], 0.5 * fine[2] + 0.5 * coarse[1])


@pytest.mark.parametrize("bad,match", [
    ({"pattern": "generator", "period": 8}, "does not use it"),
    ({"pattern": "block", "options": {"target": "away"}}, "unknown options"),
    ({"pattern": "class-mean", "options": {"target": "up"}}, "must be one of"),
    ({"pattern": "class-mean", "options": {"block_share": 1.0}}, "fraction of epsilon"),
    ({"pattern": "class-mean", "options": [1]}, "options must be a dict"),
])
def test_family_settings_it_cannot_use_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        UCConfig(**bad)


def test_each_size_rule_keeps_what_it_promises():
    delta = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]]).expand(3, 2, 2) * (8 / 255)
    block = get_family("block")(UCConfig(pattern="block"))
    tiled = block.at_size(delta, (5, 3))
    assert tiled.shape == (3, 5, 3) and torch.equal(tiled[:, :2, :2], delta) and torch.equal(tiled[:, 2:4, :2], delta)
    mean = get_family("class-mean")(UCConfig(pattern="class-mean"))
    near = mean.at_size(delta, (4, 4))
    assert set(near.unique().tolist()) == set(delta.unique().tolist())  # every value stays +-eps
    gen = get_family("generator")(UCConfig())
    small = gen.at_size(delta, (1, 1))
    assert small.shape == (3, 1, 1) and float(small.abs().max()) < 8 / 255  # resampling averages
    assert not gen.keeps_amplitude() and block.keeps_amplitude() and mean.keeps_amplitude()
    assert torch.equal(tile_at_size(delta, (2, 2)), delta)


def _mixed_sizes(n=20):
    """Half 28x28, half 27x27 grey images, two classes: a set whose working size is 224."""
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(40, 215, (28 - i % 2, 28 - i % 2), dtype=np.uint8), "L") for i in range(n)]
    return datasets.Dataset.from_dict({"image": imgs, "label": [i // 2 % 2 for i in range(n)]}).cast_column(
        "image", datasets.Image())


@pytest.mark.parametrize("pattern", ["block", "wave", "tile", "class-mean"])
def test_drawn_patterns_keep_the_full_bound_on_mixed_sizes(pattern):
    """The regression of issue 28: on 28x28 + 27x27 images the block grid was shrunk from the 224 px
    working size to each image, so the mean change fell from 16 to about 4 levels; now every image
    gets the pattern at its own pixels (blocks of `period` pixels), at the full bound."""
    ds = _mixed_sizes()
    prot = UnlearnableClusters(pattern=pattern, epsilon=16 / 255, progress=False).fit(ds, label_column="label")
    assert prot.working_hw == (224, 224)
    out = ds.map(prot, batched=True, load_from_cache_file=False)
    report = verify(ds, out, 16 / 255, progress=False)
    assert report.passed and report.max_deviation == 16
    floor = 10 if pattern == "wave" else 15.5  # a wave spends most of its budget (11.6 levels here), not all
    assert report.mean_change_levels > floor, report.summary()
    assert "mean change" in report.summary()
    if pattern == "block":
        diff = np.asarray(out[1]["image"], int) - np.asarray(ds[1]["image"], int)  # a 27x27 image
        assert diff.shape == (27, 27) and (diff[:4, :4] == diff[0, 0]).all()  # a block is 4 pixels of the image


def test_a_resampled_family_on_mixed_sizes_warns(tiny_clip, caplog):
    ds = _mixed_sizes(8)
    with caplog.at_level("WARNING"):
        UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "n_clusters": 2, "working_size": 32}).fit(ds)
    assert "resampled to each image" in caplog.text and "8 of 8 images" in caplog.text


@pytest.mark.parametrize("settings,needs", [
    ({"pattern": "block", "label_column": "label"}, False),
    ({"pattern": "class-mean", "label_column": "label"}, False),
    ({"pattern": "error-min", "label_column": "label"}, False),
    ({"pattern": "unrolled", "label_column": "label"}, False),
    ({"pattern": "block"}, True),  # label-free: the keys are K-means clusters of the features
    ({"pattern": "block", "label_column": "label", "clusters_per_class": 2}, True),
    ({"pattern": "generator", "label_column": "label"}, True),  # trained against the surrogate
    ({"pattern": "tile", "label_column": "label", "levels": (2,), "level_source": "features"}, True),
    ({"pattern": "tile", "label_column": "label", "levels": (2,), "level_source": "class-names"}, False),
])
def test_needs_surrogate(settings, needs):
    assert needs_surrogate(UCConfig(**settings), ["a", "b", "c"]) is needs


def test_a_fit_that_needs_no_features_never_loads_the_surrogate(tiny_clip, tmp_path, caplog):
    """The label-aware default with a surrogate that does not exist (the offline default CLIP):
    the fit and the map work, and give the same images as a fit with a real surrogate."""
    imgs = structured_images(12)
    ds = datasets.Dataset.from_dict({"image": imgs, "label": [i % 3 for i in range(12)]}).cast_column(
        "image", datasets.Image())
    missing = str(tmp_path / "no-such-model")
    with caplog.at_level("INFO"):
        prot = UnlearnableClusters(surrogate=missing, pattern="block", progress=False).fit(ds, label_column="label")
    assert "is not loaded" in caplog.text
    other = UnlearnableClusters(surrogate=tiny_clip, pattern="block", progress=False).fit(ds, label_column="label")
    assert prot.surrogate_info["kind"] == "none" and prot.method == "UC (label-aware)"
    assert prot.metadata["stats"]["seconds"]["features"] == 0.0
    assert torch.equal(prot.deltas, other.deltas)
    a = ds.map(prot, batched=True, load_from_cache_file=False)
    b = ds.map(other, batched=True, load_from_cache_file=False)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a["image"], b["image"]))
    prot.save_pretrained(tmp_path / "p")
    from uc_datasets import load_protector

    back = load_protector(tmp_path / "p")
    new = structured_images(3, seed=9)  # unseen images: still no surrogate needed
    assert len(back.protect_images(new, labels=[0, 1, 2])) == 3 and back._surrogate is None


def test_a_fit_whose_perturbations_change_no_pixel_is_refused(labelled_tiny):
    """error-min at 1/255 with one tiny round crafts noise below half a level: every pixel would round back."""
    with pytest.raises(ValueError, match="change no pixel"):
        UnlearnableClusters(pattern="error-min", epsilon=1 / 255, progress=False, error_min={
            "rounds": 1, "train_steps": 1, "batch_size": 6, "model_width": 0.0625, "step_size": 0.01}).fit(
            labelled_tiny, label_column="label")


def test_an_unbatched_map_warns_once_about_images_outside_the_fit_set(labelled_tiny, caplog):
    tiny_cp = {"rounds": 1, "train_steps": 1, "batch_size": 6, "model_width": 0.0625, "step_size": 1.0}
    prot = UnlearnableClusters(pattern="tile", period=2, contrastive_share=0.25, contrastive=tiny_cp,
                               progress=False).fit(labelled_tiny, label_column="label")
    other = datasets.Dataset.from_dict({"image": structured_images(5, seed=11), "label": [0, 1, 2, 0, 1]}).cast_column(
        "image", datasets.Image())
    with caplog.at_level("WARNING"):
        other.map(prot, load_from_cache_file=False)  # unbatched: one call per row
    assert caplog.text.count("not in the fit set") == 1


def test_a_none_image_names_its_row_once():
    from uc_datasets.core.imaging import ImageDecodeError

    ds = datasets.Dataset.from_dict({"image": structured_images(3), "label": [0, 1, 2]}).cast_column(
        "image", datasets.Image())
    prot = UnlearnableClusters(pattern="block", period=2, progress=False).fit(ds, label_column="label")
    with pytest.raises(ImageDecodeError) as err:
        prot.protect_images([None], labels=[0], indices=[7])
    assert str(err.value).count("row 7") == 1 and "got no image (None)" in str(err.value)


@pytest.fixture(scope="module")
def labelled_tiny():
    return datasets.Dataset.from_dict({"image": structured_images(12), "label": [i % 3 for i in range(12)]}
                                      ).cast_column("image", datasets.Image())


def test_the_estimator_follows_huggingface_hubs_progress_setting_unless_told():
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    disable_progress_bars()
    try:
        assert UnlearnableClusters(pattern="block").progress is False
        assert UnlearnableClusters(pattern="block", progress=True).progress is True
    finally:
        enable_progress_bars()
    assert UnlearnableClusters(pattern="block").progress is True


def test_a_config_never_shares_the_label_aware_defaults_dicts():
    from uc_datasets.methods.uc.config import LABEL_AWARE_DEFAULTS, UCConfig

    before = {k: (dict(v) if isinstance(v, dict) else v) for k, v in LABEL_AWARE_DEFAULTS.items()}
    cfg = UCConfig(**LABEL_AWARE_DEFAULTS, label_column="label")
    cfg.options["rounds"] = 2
    assert LABEL_AWARE_DEFAULTS == before and cfg.options == {"init": "class-mean", "rounds": 2}
