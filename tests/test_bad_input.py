"""Every bad-input case listed in DEVELOPERS.md: a clear error or a documented handling."""

import io

import datasets
import numpy as np
import pytest
from PIL import Image

from tests.conftest import FAST_FIT, image_dataset, structured_images
from uc_datasets import UnlearnableClusters, verify
from uc_datasets.core.imaging import ImageDecodeError, ImageModeError


def _uc(tiny_clip, **kw):
    return UnlearnableClusters(surrogate=tiny_clip, **{**FAST_FIT, "epochs": 1, **kw})


def test_missing_column_names_the_columns(tiny_clip, rgb40):
    with pytest.raises(KeyError, match=r"column 'img' not found; the dataset has columns \['image', 'label'\]"):
        _uc(tiny_clip).fit(rgb40, image_column="img")


def test_non_image_column(tiny_clip, rgb40):
    with pytest.raises(TypeError, match="cast_column"):
        _uc(tiny_clip).fit(rgb40, image_column="label")


def test_empty_dataset(tiny_clip, rgb40):
    with pytest.raises(ValueError, match="empty"):
        _uc(tiny_clip).fit(rgb40.select([]))


def test_datasetdict_is_refused_with_a_hint(tiny_clip, rgb40):
    with pytest.raises(TypeError, match=r"ds\['train'\]"):
        _uc(tiny_clip).fit(datasets.DatasetDict({"train": rgb40}))


def test_too_few_images_for_the_clusters(tiny_clip, rgb40):
    with pytest.raises(ValueError, match="cannot make n_clusters=4"):
        _uc(tiny_clip).fit(rgb40.select(range(3)))


def test_wrong_epsilon(tiny_clip):
    with pytest.raises(ValueError, match="Did you mean"):
        _uc(tiny_clip, epsilon=16)


def test_corrupt_bytes_name_the_row_in_fit_and_map(tiny_clip, fitted):
    good = structured_images(8)
    buf = io.BytesIO()
    good[0].save(buf, format="PNG")
    rows = [{"bytes": buf.getvalue(), "path": None}] * 7 + [{"bytes": b"\x89PNG\r\n\x1a\ngarbage", "path": None}]
    ds = datasets.Dataset.from_dict({"image": rows}).cast_column("image", datasets.Image())
    with pytest.raises(ImageDecodeError, match="row 7 of column 'image'.*could not be decoded"):
        _uc(tiny_clip).fit(ds)
    _, prot = fitted
    undecoded = ds.cast_column("image", datasets.Image(decode=False))  # map decodes itself, errors are ours
    with pytest.raises(ImageDecodeError, match="row 7 of column 'image'"):
        undecoded.map(prot, batched=True, batch_size=8, with_indices=True)


def _corrupt_decoded(n: int = 8, bad: int = 5) -> datasets.Dataset:
    """``n`` decodable PNG rows but row ``bad`` holds broken bytes, in a *decoded* Image() column."""
    def png(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    rows = [{"bytes": png(img), "path": None} for img in structured_images(n, seed=3)]
    rows[bad] = {"bytes": b"\x89PNG\r\n\x1a\ngarbage", "path": None}
    return datasets.Dataset.from_dict({"image": rows, "label": list(range(n))}).cast_column("image", datasets.Image())


def test_corrupt_bytes_in_a_decoded_column_name_the_row_and_the_fix(fitted):
    _, prot = fitted
    ds = _corrupt_decoded()
    with pytest.raises(ImageDecodeError, match=r"row 5 of column 'image': the image bytes could not be decoded.*"
                                               r"ds.filter\(lambda r, i: i != 5, with_indices=True\).*on_bad_image"):
        ds.map(prot, batched=True, with_indices=True, load_from_cache_file=False)
    with pytest.raises(ImageDecodeError, match=r"image 5 of this map batch.*with_indices=True\) names its row"):
        ds.map(prot, batched=True, load_from_cache_file=False)


def test_on_bad_image_skip_drops_the_row_and_keep_publishes_it_listed(fitted):
    import copy

    _, prot = fitted
    ds = _corrupt_decoded()
    prot = copy.copy(prot)
    prot.on_bad_image = "skip"
    out = ds.map(prot, batched=True, load_from_cache_file=False)
    assert out["label"] == [0, 1, 2, 3, 4, 6, 7]  # the label column follows the dropped row
    assert verify(ds.select([0, 1, 2, 3, 4, 6, 7]), out, 8 / 255, progress=False).passed
    with pytest.raises(ValueError, match="only a batched map"):
        ds.map(prot, load_from_cache_file=False)
    prot.on_bad_image = "keep"
    out = ds.map(prot, batched=True, load_from_cache_file=False)
    assert isinstance(out.features["image"], datasets.Image) and len(out) == 8
    raw = out.cast_column("image", datasets.Image(decode=False))
    assert raw[5]["image"]["bytes"] == b"\x89PNG\r\n\x1a\ngarbage"  # unchanged
    report = verify(ds, out, 8 / 255, progress=False)
    assert report.undecodable == [5] and report.passed and "undecodable image(s) kept as they were: rows [5]" in \
        report.summary()
    prot.on_bad_image = "nope"
    with pytest.raises(ValueError, match="on_bad_image must be one of"):
        ds.map(prot, batched=True, load_from_cache_file=False)


def test_a_column_of_file_paths_gets_the_cast_hint_at_map_time(fitted, tmp_path):
    _, prot = fitted
    structured_images(1)[0].save(tmp_path / "a.png")
    ds = datasets.Dataset.from_dict({"image": [str(tmp_path / "a.png")] * 2})
    with pytest.raises(TypeError, match=r"holds strings \(file paths\?\).*ds.cast_column\('image', datasets.Image\(\)\)"):
        ds.map(prot, batched=True)
    with pytest.raises(TypeError, match="cast_column"):
        ds.map(prot)
    cast = ds.cast_column("image", datasets.Image())
    out = cast.map(prot, batched=True)
    assert isinstance(out.features["image"], datasets.Image) and verify(cast, out, 8 / 255, progress=False).passed


def test_a_grey_rgb_mix_cast_to_rgb_verifies_as_it_decodes(tiny_clip):
    imgs = structured_images(8)
    mixed = image_dataset([im.convert("L") if i % 2 else im for i, im in enumerate(imgs)])
    mixed = mixed.cast_column("image", datasets.Image(mode="RGB"))
    prot = _uc(tiny_clip).fit(mixed)
    assert len(prot.cache_keys) == 8 and prot.assign([r["image"] for r in mixed]).tolist() == \
        prot.cache_clusters.tolist()  # fit saw the images as the column decodes them (RGB): cache hits
    out = mixed.map(prot, batched=True)
    report = verify(mixed, out, 8 / 255, progress=False)
    assert report.passed and not report.violations, report.violations


@pytest.mark.parametrize("extra", [{"with_rank": True}, {"with_indices": True},
                                   {"with_indices": True, "with_rank": True}])
@pytest.mark.parametrize("batched", [False, True])
def test_with_rank_and_with_indices_maps_give_the_same_images(fitted, extra, batched):
    ds, prot = fitted
    small = ds.select(range(6))
    ref = small.map(prot, batched=True)
    out = small.map(prot, batched=batched, load_from_cache_file=False, **extra)
    assert [np.asarray(a["image"]).tobytes() for a in out] == [np.asarray(b["image"]).tobytes() for b in ref]


def test_with_rank_in_two_processes_and_the_rank_device(fitted, monkeypatch):
    import torch

    from uc_datasets.core.protector import device_for_rank

    ds, prot = fitted
    small = ds.select(range(8))
    ref = small.map(prot, batched=True)
    out = small.map(prot, batched=True, with_rank=True, num_proc=2, load_from_cache_file=False)
    assert [np.asarray(a["image"]).tobytes() for a in out] == [np.asarray(b["image"]).tobytes() for b in ref]
    assert device_for_rank(1) is None or torch.cuda.is_available()  # no CUDA: the surrogate stays put
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [device_for_rank(r) for r in (0, 1, 2, 3, 4, None)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0",
                                                                    "cuda:1", None]
    import copy

    clone = copy.copy(prot)  # the surrogate is reloaded on first use, onto the device set by .to()
    assert clone._surrogate is None and clone.to("meta") is clone
    assert next(clone.surrogate.parameters()).device.type == "meta"


def test_mixed_modes_fit_and_protect(tiny_clip, fitted):
    """Grey, RGBA, palette, CMYK and bilevel images in one dataset: documented handling."""
    base = structured_images(6, size=(20, 20))
    pal = base[2].convert("P", palette=Image.ADAPTIVE)
    imgs = [base[0].convert("L"), base[1].convert("RGBA"), pal, base[3].convert("CMYK"), base[4].convert("1"),
            base[5]]
    ds = image_dataset(imgs)
    prot = _uc(tiny_clip).fit(ds)
    out = ds.map(prot, batched=True)
    modes = [r["image"].mode for r in out]
    assert modes == ["L", "RGBA", "RGB", "RGB", "L", "RGB"]  # P, CMYK -> RGB; 1 -> L (DEVELOPERS.md)
    assert verify(ds, out, 8 / 255, progress=False).passed


def test_sixteen_bit_images_are_refused(tiny_clip):
    imgs = structured_images(5, size=(8, 8))
    i16 = Image.fromarray(np.full((8, 8), 40000, np.uint16))
    assert i16.mode.startswith("I")
    ds = image_dataset([*imgs, i16])
    with pytest.raises(ImageModeError, match="row 5.*16/32-bit"):
        _uc(tiny_clip).fit(ds)


def test_one_pixel_images(tiny_clip):
    imgs = [Image.new("RGB", (1, 1), (i * 20, 255 - i * 20, 128)) for i in range(8)]
    ds = image_dataset(imgs)
    prot = _uc(tiny_clip).fit(ds)
    out = ds.map(prot, batched=True)
    assert all(r["image"].size == (1, 1) for r in out)
    r = verify(ds, out, 8 / 255, progress=False)
    assert r.max_deviation <= 8


def test_huge_images_are_refused_before_work(tiny_clip, fitted):
    imgs = [*structured_images(5, size=(8, 8)), Image.new("L", (3000, 2000))]
    ds = image_dataset(imgs)
    with pytest.raises(ValueError, match="row 5.*max_pixels"):
        UnlearnableClusters(surrogate=tiny_clip, max_pixels=5_000_000, **{**FAST_FIT, "epochs": 1}).fit(ds)
    _, prot = fitted
    prot.max_pixels = 5_000_000
    try:
        with pytest.raises(ValueError, match="max_pixels"):
            ds.map(prot, batched=True)
    finally:
        prot.max_pixels = 64_000_000


def _saved(prot, path):
    prot.save_pretrained(path)
    return path


@pytest.mark.parametrize("damage,match", [
    (lambda d: (d / "config.json").write_text("{not json"), r"config.json: not valid JSON"),
    (lambda d: (d / "config.json").write_text("[1, 2]"), r"config.json: expected a JSON object"),
    (lambda d: (d / "config.json").write_text(
        __import__("json").dumps({k: v for k, v in __import__("json").loads((d / "config.json").read_text()).items()
                                  if k != "config"})), r"config.json: missing entry 'config'"),
    (lambda d: (d / "protector.safetensors").write_bytes((d / "protector.safetensors").read_bytes()[:100]),
     r"protector.safetensors: cannot be read .*truncated"),
])
def test_a_damaged_protector_directory_names_the_file(fitted, tmp_path, damage, match):
    from uc_datasets import load_protector
    from uc_datasets.core.persistence import InvalidProtectorError

    _, prot = fitted
    d = _saved(prot, tmp_path / "p")
    damage(d)
    with pytest.raises(InvalidProtectorError, match=r"^this is not a valid protector directory: .*" + match):
        load_protector(d)


def _edit_tensors(d, **changes):
    from safetensors.torch import load_file, save_file

    t = load_file(str(d / "protector.safetensors"))
    for name, fn in changes.items():
        t[name] = fn(t[name].clone())
    save_file(t, str(d / "protector.safetensors"))


def test_nan_perturbations_are_refused_at_load_and_never_applied(fitted, tmp_path):
    import torch

    from uc_datasets import load_protector
    from uc_datasets.core.imaging import apply_delta
    from uc_datasets.core.persistence import InvalidProtectorError

    _, prot = fitted
    d = _saved(prot, tmp_path / "p")

    def nan(t):
        t[0, 0, 0, 0] = float("nan")
        return t

    _edit_tensors(d, deltas=nan)
    with pytest.raises(InvalidProtectorError, match="NaN or infinite values, so some pixels would be left unprotected"):
        load_protector(d)
    delta = torch.full((3, 2, 2), 4 / 255)
    delta[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        apply_delta(Image.new("RGB", (2, 2)), delta, 8 / 255)


def test_out_of_range_cached_clusters_are_refused_at_load(fitted, tmp_path):
    from uc_datasets import load_protector
    from uc_datasets.core.persistence import InvalidProtectorError

    _, prot = fitted
    d = _saved(prot, tmp_path / "p")

    def out_of_range(t):
        t[0] = 99
        return t

    _edit_tensors(d, cache_clusters=out_of_range)
    with pytest.raises(InvalidProtectorError, match=r"cached cluster id is out of range \(must be in 0..3, found 0..99\)"):
        load_protector(d)


# ---------------------------------------------------------------------------- issue 20: still-bad inputs
def _labelled(names=("cat", "dog", "bird"), n: int = 12) -> datasets.Dataset:
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})
    return datasets.Dataset.from_dict({"image": structured_images(n, seed=2), "label": [i % 3 for i in range(n)]},
                                      features=feats)


def _tile(tiny_clip, **kw):
    return _uc(tiny_clip, pattern="tile", period=2, **kw)


def _no_work(monkeypatch):
    import uc_datasets.methods.uc.unlearnable_clusters as uc_module

    def fail(*args, **kwargs):
        raise AssertionError("images were read before the bad input was refused")

    monkeypatch.setattr(uc_module, "prepare_working_set", fail)


def test_an_unreachable_name_encoder_names_itself_the_option_and_offline_before_work(tiny_clip, monkeypatch):
    _no_work(monkeypatch)
    with pytest.raises(OSError, match=r"encoder 'bert-base-uncased' \(name_encoder\) cannot be loaded.*"
                                      r"name_encoder='offline'"):
        _tile(tiny_clip, levels=(2,)).fit(_labelled(), label_column="label")


def test_input_columns_maps_like_a_plain_map(fitted):
    ds, prot = fitted
    small = ds.select(range(6))
    expected = [np.asarray(r["image"]) for r in small.map(prot, batched=True)]
    for batched in (True, False):
        out = small.map(prot, batched=batched, input_columns=["image"], load_from_cache_file=False)
        assert out.column_names == ["image", "label"]
        assert all(np.array_equal(np.asarray(r["image"]), e) for r, e in zip(out, expected))
    with pytest.raises(KeyError, match=r"input_columns=\['label'\]\) does not pass \['image'\].*"
                                       r"use input_columns=\['image'\]"):
        small.map(prot, batched=True, input_columns=["label"])


def test_a_label_aware_protector_refuses_input_columns_without_its_label_column(tiny_clip):
    ds = _labelled()
    prot = _tile(tiny_clip).fit(ds, label_column="label")
    with pytest.raises(KeyError, match=r"use input_columns=\['image', 'label'\]"):
        ds.map(prot, batched=True, input_columns=["image"])
    out = ds.map(prot, batched=True, input_columns=["image", "label"])
    assert verify(ds, out, prot.config.epsilon, progress=False).passed


def test_other_classlabel_names_are_refused_unless_allowed(tiny_clip, tmp_path):
    ds = _labelled(("cat", "dog", "bird"))
    prot = _tile(tiny_clip).fit(ds, label_column="label")
    renamed = ds.cast_column("label", datasets.ClassLabel(names=["dog", "cat", "bird"]))
    prot.save_pretrained(tmp_path / "p")
    from uc_datasets import load_protector

    for p in (prot, load_protector(tmp_path / "p")):
        with pytest.raises(ValueError, match=r"names the classes differently.*0: 'cat' -> 'dog', 1: 'dog' -> 'cat'"
                                             r".*allow_other_class_names"):
            renamed.map(p, batched=True)
    assert len(ds.map(prot, batched=True)) == 12  # the same names pass
    prot.allow_other_class_names = True
    assert len(renamed.map(prot, batched=True, load_from_cache_file=False)) == 12


def test_a_period_larger_than_the_images_is_refused_from_the_headers(tiny_clip, monkeypatch):
    import uc_datasets.core.working_set as data_module

    monkeypatch.setattr(data_module, "WorkingSet", None)  # nothing may be decoded
    with pytest.raises(ValueError, match=r"period=32 is larger than the smallest image \(24x24 pixels\).*period <= 24"):
        _uc(tiny_clip, pattern="tile", period=32).fit(_labelled(), label_column="label")


def test_duplicate_levels_are_refused():
    from uc_datasets import UCConfig

    with pytest.raises(ValueError, match=r"levels=\(5, 5, 2\) repeats a level.*levels=\(5, 2\)"):
        UCConfig(pattern="tile", levels=(5, 5, 2))


def test_clusters_per_class_above_a_class_size_warns_and_without_labels_is_refused(tiny_clip, rgb40, caplog,
                                                                                   monkeypatch):
    with caplog.at_level("WARNING"):
        prot = _tile(tiny_clip, clusters_per_class=5).fit(_labelled(), label_column="label")  # 4 images a class
    assert "clusters_per_class=5, but 3 class(es) have fewer images" in caplog.text and "'cat' (4)" in caplog.text
    assert prot.config.n_clusters == 12
    _no_work(monkeypatch)
    with pytest.raises(ValueError, match="clusters_per_class=3 makes clusters inside each class.*label_column"):
        _uc(tiny_clip, clusters_per_class=3).fit(rgb40)


def test_class_names_overriding_a_classlabel_warn(tiny_clip, caplog):
    with caplog.at_level("WARNING"):
        _tile(tiny_clip).fit(_labelled(), label_column="label", class_names=["a", "b", "c"])
    assert "override the names of the ClassLabel column 'label'" in caplog.text and "'cat'" in caplog.text


def test_the_epsilon_hint_never_suggests_an_invalid_value():
    from uc_datasets.core.config import as_epsilon

    with pytest.raises(ValueError, match="above 255 levels too") as err:
        as_epsilon(300)
    assert "300/255" not in str(err.value)
    with pytest.raises(ValueError, match=r"Did you mean epsilon=16/255"):
        as_epsilon(16)


# ---------------------------------------------------------------------------- the commands' bad inputs
def _labelled_on_disk(path, n: int = 12) -> str:
    image_dataset(structured_images(n), [i % 3 for i in range(n)]).save_to_disk(str(path))
    return str(path)


def test_the_missing_label_column_hint_is_one_that_works(tmp_path, capsys):
    """`--label-column None` would look for a column named 'None': the hint says to leave the option out."""
    from uc_datasets.commands.cli import main

    rc = main(["protect", _labelled_on_disk(tmp_path / "in"), "--label-column", "target", "--output-dir",
               str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "label column 'target' not found" in err
    assert "or leave out --label-column for label-agnostic mode" in err and "--label-column None" not in err


def test_protect_refuses_to_overwrite_an_earlier_protector_unless_told(tmp_path, capsys):
    from uc_datasets.commands.cli import main

    out = tmp_path / "out"
    argv = ["protect", _labelled_on_disk(tmp_path / "in"), "--label-column", "label", "--pattern", "block",
            "--epsilon", "8", "--output-dir", str(out)]
    assert main(argv) == 0
    secret = (out / "protector" / "protector.safetensors").read_bytes()
    capsys.readouterr()
    assert main([*argv, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "already holds protected/ and protector/ of an earlier run" in err
    assert "Pass --overwrite to replace them, or choose another directory (--output-dir)" in err
    assert (out / "protector" / "protector.safetensors").read_bytes() == secret  # nothing touched
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert (out / "protector" / "protector.safetensors").read_bytes() != secret  # another seed, another secret


def test_the_evaluate_recipe_reports_errors_as_the_command_line_does(tmp_path, capsys):
    import runpy
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "evaluate_protection.py"
    main = runpy.run_path(str(recipe))["main"]
    argv = ["--clean", str(tmp_path / "no-such-dir"), "--protected", str(tmp_path / "p"), "--encoder", "offline"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Dataset directory") and "does not exist" in err and "Traceback" not in err
    assert main([*argv, "-v"]) == 2 and "Traceback" in capsys.readouterr().err


def _evaluation_pair(root, *, protected_labels: bool = True, shuffle: bool = False, noise: int = 8):
    """A clean DatasetDict and its protected train split (flat +-``noise`` levels), saved; epsilon recorded."""
    import json

    train, test = image_dataset(structured_images(24, seed=1), [i % 3 for i in range(24)]), \
        image_dataset(structured_images(6, seed=2), [i % 3 for i in range(6)])
    datasets.DatasetDict(train=train, test=test).save_to_disk(str(root / "clean"))
    signs = np.random.default_rng(0).choice([-noise, noise], (24, 24, 24, 3))
    protected = train.map(lambda row, i: {"image": Image.fromarray(np.clip(
        np.asarray(row["image"], np.int16) + signs[i], 0, 255).astype(np.uint8))}, with_indices=True)
    if not protected_labels:
        protected = protected.remove_columns("label")
    if shuffle:
        protected = protected.shuffle(seed=0).flatten_indices()
    protected.info.description = json.dumps({"uc_datasets": {"protected": True, "method": "UC",
                                                              "epsilon": noise / 255}})
    protected.save_to_disk(str(root / "protected"))
    return str(root / "clean"), str(root / "protected")


def test_evaluate_refuses_a_shuffled_protected_set_without_labels(tmp_path, capsys):
    """Without a label column the labels cannot tell the order: the images do (each within epsilon)."""
    from uc_datasets.commands.cli import main

    clean, protected = _evaluation_pair(tmp_path, protected_labels=False, shuffle=True)
    rc = main(["evaluate", "--clean", clean, "--protected", protected, "--class-names", "a", "b", "c",
               "--encoder", "offline", "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "more than the protection's recorded bound of 8" in err
    assert "would be paired with the wrong clean labels" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()  # refused before any victim trained


def test_evaluate_warns_when_the_protected_set_is_the_clean_one(tmp_path, caplog):
    from uc_datasets.evaluation.data import load_evaluation_data

    clean, protected = _evaluation_pair(tmp_path)
    with caplog.at_level("WARNING"):
        load_evaluation_data(clean, protected, class_names=["a", "b", "c"], progress=False)
        assert "No protected image differs" not in caplog.text  # the real protected set is quiet
        load_evaluation_data(clean, clean, class_names=["a", "b", "c"], progress=False)
    assert "No protected image differs from its clean image (24 rows checked): --protected looks like the clean " \
           "set itself" in caplog.text
