import json
import subprocess
import sys

import datasets

from tests.conftest import image_dataset, structured_images
from uc_datasets.cli import main


def test_protect_from_disk_writes_everything(tiny_clip, tmp_path, capsys):
    ds = image_dataset(structured_images(12))
    ds.save_to_disk(str(tmp_path / "in"))
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--n-clusters", "3", "--epsilon", "8",
               "--epochs", "1", "--batch-size", "8", "--output-dir", str(tmp_path / "out")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "SECRET" in out and "preview.png" in out
    protected = datasets.load_from_disk(str(tmp_path / "out" / "protected"))
    assert len(protected) == 12
    from uc_datasets.evaluation import read_protection_metadata

    meta = read_protection_metadata(protected)
    assert meta["method"] == "UC-CLIP" and meta["surrogate"].endswith("(local model)")
    assert tiny_clip not in protected.info.description  # local paths stay private
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["verify"]["passed"] and summary["config"]["n_clusters"] == 3
    assert summary["verify"]["max_deviation"] <= 8
    assert (tmp_path / "out" / "protector" / "protector.safetensors").is_file()
    from PIL import Image

    grid = Image.open(tmp_path / "out" / "preview.png")
    assert grid.format == "PNG" and grid.size[1] > grid.size[0] / 8 * 3 * 0.9  # 3 rows
    # verify subcommand: passes, and fails (exit 1) against another dataset
    assert main(["verify", str(tmp_path / "in"), str(tmp_path / "out" / "protected"), "--epsilon", "8"]) == 0
    assert main(["verify", str(tmp_path / "in"), str(tmp_path / "out" / "protected"), "--epsilon", "2"]) == 1


def test_protect_image_folder_max_samples(tiny_clip, tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            structured_images(1, size=(20 + i, 16), seed=ord(cls) + i)[0].save(tmp_path / "imgs" / cls / f"{i}.png")
    rc = main(["protect", str(tmp_path / "imgs"), "--surrogate", tiny_clip, "--n-clusters", "2", "--epochs", "1",
               "--batch-size", "4", "--max-samples", "6", "--working-size", "16", "--output-dir",
               str(tmp_path / "o")])
    assert rc == 0
    out = datasets.load_from_disk(str(tmp_path / "o" / "protected"))
    assert len(out) == 6 and sorted({r["image"].size for r in out}) == [(20, 16), (21, 16), (22, 16), (23, 16),
                                                                          (24, 16)]
    assert json.loads((tmp_path / "o" / "run_summary.json").read_text())["fit_stats"]["working_hw"] == [16, 16]


def test_clear_errors(tiny_clip, tmp_path, capsys):
    image_dataset(structured_images(4)).save_to_disk(str(tmp_path / "in"))
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--image-column", "photo",
               "--output-dir", str(tmp_path / "o")])
    assert rc == 2 and "column 'photo' not found" in capsys.readouterr().err
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--epsilon", "0.06",
               "--output-dir", str(tmp_path / "o")])
    assert rc == 2 and "at least 1/255" in capsys.readouterr().err
    assert not (tmp_path / "o" / "protected").exists()


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "uc_datasets.cli", "protect", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--n-clusters" in out and "--epsilon" in out and "--output-dir" in out


def test_protect_with_a_baseline_method(tmp_path, capsys):
    ds = image_dataset(structured_images(12), labels=[i % 3 for i in range(12)])
    ds.save_to_disk(str(tmp_path / "in"))
    rc = main(["protect", str(tmp_path / "in"), "--method", "eminn", "--label-column", "label", "--epsilon", "8",
               "--batch-size", "8", "--method-arg", "steps=2", "--method-arg", "max_rounds=1",
               "--method-arg", "train_steps=1", "--method-arg", "model_width=0.0625",
               "--output-dir", str(tmp_path / "out")])
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["method"] == "EMinN" and summary["verify"]["passed"]
    assert summary["config"]["params"]["steps"] == 2
    assert main(["protect", str(tmp_path / "in"), "--method", "nope", "--output-dir", str(tmp_path / "x")]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_protect_label_aware_tile_from_the_command_line(tiny_clip, tmp_path):
    ds = image_dataset(structured_images(12), [i % 3 for i in range(12)])
    ds.save_to_disk(str(tmp_path / "in"))
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--pattern", "tile", "--period", "3",
               "--label-column", "label", "--epsilon", "8", "--output-dir", str(tmp_path / "out")])
    assert rc == 0
    from uc_datasets import load_protector
    from uc_datasets.evaluation import read_protection_metadata

    prot = load_protector(tmp_path / "out" / "protector")
    assert prot.method == "UC-CLIP (label-aware)" and prot.config.pattern == "tile" and prot.config.period == 3
    assert prot.config.n_clusters == 3 and prot.classes == [0, 1, 2]
    protected = datasets.load_from_disk(str(tmp_path / "out" / "protected"))
    assert read_protection_metadata(protected)["method"] == "UC-CLIP (label-aware)"
    assert json.loads(protected.info.description)["uc_datasets"]["mode"] == "label-aware"
