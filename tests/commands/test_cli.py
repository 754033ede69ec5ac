import argparse
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from tests.conftest import image_dataset, structured_images
from uc_datasets.commands.cli import main


def test_protect_from_disk_writes_everything(tiny_clip, tmp_path, capsys):
    ds = image_dataset(structured_images(12))
    ds.save_to_disk(str(tmp_path / "in"))
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--n-clusters", "3", "--epsilon", "8",
               "--epochs", "1", "--batch-size", "8", "--output-dir", str(tmp_path / "out")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "SECRET" in out and "preview.png" in out
    passed = next(line for line in out.splitlines() if line.startswith("PASSED"))
    assert " dB (5th percentile " in passed and "SSIM 0." in passed  # the visual cost on the PASSED line
    protected = datasets.load_from_disk(str(tmp_path / "out" / "protected"))
    assert len(protected) == 12
    from uc_datasets.evaluation.sweep import read_protection_metadata

    meta = read_protection_metadata(protected)
    assert meta["method"] == "UC-CLIP" and meta["surrogate"].endswith("(local model)")
    assert tiny_clip not in protected.info.description  # local paths stay private
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["verify"]["passed"] and summary["config"]["n_clusters"] == 3
    assert summary["verify"]["max_deviation"] <= 8
    assert summary["visual_cost"]["psnr_db"] >= 30.07  # every change within 8 levels: PSNR >= 30.07 dB
    assert 0 < summary["visual_cost"]["ssim"] < 1
    assert (tmp_path / "out" / "protector" / "protector.safetensors").is_file()
    from PIL import Image

    grid = Image.open(tmp_path / "out" / "preview.png")
    assert grid.format == "PNG" and grid.size[1] > grid.size[0] / 8 * 4 * 0.9  # 4 rows
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
    err = capsys.readouterr().err
    assert rc == 2 and "column 'photo' not found" in err and "Traceback" not in err
    assert "Pass --image-column ... naming the image column" in err and "image_column=" not in err  # the option
    assert not (tmp_path / "o").exists()  # a failed protect leaves nothing behind


@pytest.mark.parametrize("argv", [
    ["protect", "IN", "--epsilon", "0.0627"],
    ["verify", "IN", "IN", "--epsilon", "0.0627"],
    ["push", "IN", "me/x", "--clean", "IN", "--epsilon", "0.0627"],
])
def test_an_epsilon_below_one_level_is_refused_as_a_likely_fraction(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "did you mean 16 (levels) or 0.0627 as a fraction" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["300", "0", "-4", "nan", "abc"])
def test_every_bad_epsilon_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["protect", "IN", "--epsilon", value])
    assert exit_.value.code == 2 and "--epsilon" in capsys.readouterr().err


def test_exit_codes_one_for_a_failed_check_two_for_bad_usage_no_traceback(capsys, monkeypatch):
    from uc_datasets.commands import cli
    from uc_datasets.hub import ProtectionCheckError
    from uc_datasets.pipeline import VerificationError

    for err, code in [(VerificationError("verification failed"), 1), (ProtectionCheckError("bad", {}), 1),
                      (ValueError("bad column"), 2), (RuntimeError("boom"), 2)]:
        def fail(args, err=err):
            raise err

        monkeypatch.setattr(cli, "_run_protect", fail)
        assert main(["protect", "IN"]) == code
        out = capsys.readouterr().err
        assert out.startswith(f"error: {err}") and "Traceback" not in out
    assert main(["-v", "protect", "IN"]) == 2  # -v: the same exit code, plus the traceback
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "error: boom" in err


def test_import_and_help_do_not_load_the_heavy_modules():
    code = ("import sys, contextlib, io\n"
            "import uc_datasets\n"
            "from uc_datasets.commands.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['protect', '--help'])\n"
            "heavy = ('torch', 'datasets', 'transformers', 'matplotlib', 'huggingface_hub', 'accelerate')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "print(uc_datasets.UCConfig(epsilon=8 / 255).epsilon_levels)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "8"]


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "uc_datasets", "protect", "--help"], capture_output=True,
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
    from uc_datasets.evaluation.sweep import read_protection_metadata

    prot = load_protector(tmp_path / "out" / "protector")
    assert prot.method == "UC (label-aware)" and prot.config.pattern == "tile" and prot.config.period == 3
    assert prot.config.n_clusters == 3 and prot.classes == [0, 1, 2]
    protected = datasets.load_from_disk(str(tmp_path / "out" / "protected"))
    assert read_protection_metadata(protected)["method"] == "UC (label-aware)"  # one key per class: no surrogate was used
    assert json.loads(protected.info.description)["uc_datasets"]["mode"] == "label-aware"


def test_a_protect_that_fails_its_check_keeps_only_what_resume_uses(tiny_clip, tmp_path, monkeypatch, capsys):
    from uc_datasets import pipeline
    from uc_datasets.core.verify import VerifyReport

    image_dataset(structured_images(8)).save_to_disk(str(tmp_path / "in"))
    monkeypatch.setattr(pipeline, "verify", lambda *a, **k: VerifyReport(8, 8, 9, 0.5, [{"index": 0, "reason": "x"}]))
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--n-clusters", "2", "--epochs", "1",
               "--batch-size", "8", "--output-dir", str(tmp_path / "o")])
    assert rc == 1 and "error: verification failed, nothing was saved" in capsys.readouterr().err
    left = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert left and set(left) <= {"clusters.safetensors", "checkpoints"}, left


def test_python_dash_m_and_version():
    import uc_datasets

    out = subprocess.run([sys.executable, "-m", "uc_datasets", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"uc-datasets {uc_datasets.__version__}"
    out = subprocess.run([sys.executable, "-m", "uc_datasets", "verify", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--epsilon" in out


def test_py_typed_marker_ships_with_the_package():
    import uc_datasets

    assert (Path(uc_datasets.__file__).parent / "py.typed").is_file()


def test_push_method_accepts_every_registered_method():
    from uc_datasets.commands.push import add_push_arguments
    from uc_datasets.registry import METHODS

    parser = add_push_arguments(argparse.ArgumentParser())
    base = ["in", "me/repo", "--clean", "clean"]
    for key in METHODS:
        assert parser.parse_args([*base, "--method", key]).method in METHODS[key].names
    assert parser.parse_args([*base, "--method", "UC-CLIP"]).method == "UC-CLIP"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--method", "nope"])


def test_name_encoder_option_reaches_the_fit_and_its_error_names_the_option(tiny_clip, tmp_path, capsys):
    ds = image_dataset(structured_images(12), [i % 3 for i in range(12)])
    ds = ds.cast_column("label", datasets.ClassLabel(names=["cat", "dog", "bird"]))
    ds.save_to_disk(str(tmp_path / "in"))
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--pattern", "tile", "--period", "3",
               "--label-column", "label", "--levels", "2", "--name-encoder", str(tmp_path / "no-such-encoder"),
               "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "no-such-encoder' (--name-encoder) cannot be loaded" in err
    assert "pass --name-encoder 'offline'" in err and "(name_encoder)" not in err and "name_encoder=" not in err


def test_label_column_without_pattern_gets_the_label_aware_default():
    from uc_datasets.commands.cli import build_parser, uc_kwargs_from_args
    from uc_datasets.methods.uc.config import LABEL_AWARE_DEFAULTS

    def kwargs(*extra):
        return uc_kwargs_from_args(build_parser(["protect"]).parse_args(["protect", "src", *extra]))

    default = kwargs("--label-column", "label")
    assert default["pattern"] == LABEL_AWARE_DEFAULTS["pattern"] == "unrolled"
    assert default["levels"] == (5, 2) and default["options"] == {"init": "class-mean"}
    assert kwargs("--label-column", "label", "--levels", "3")["levels"] == (3,)  # the user's value wins
    assert kwargs("--label-column", "label", "--pattern", "tile")["pattern"] == "tile"
    assert kwargs("--label-column", "label", "--method-arg", "pattern='wave'")["pattern"] == "wave"
    assert "pattern" not in kwargs()  # label-free: the generator, UCConfig's default
    assert "pattern" not in kwargs("--label-column", "label", "--method", "synper")  # not a UC option


def test_method_option_takes_registered_names_only():
    from uc_datasets.commands.cli import build_parser, method_key

    parser = build_parser(["protect"])
    assert method_key(parser.parse_args(["protect", "src", "--method", "EMinN_classwise"])) == "eminn-classwise"
    with pytest.raises(ValueError, match="unknown method 'nope'; choose from uc, eminn"):
        method_key(parser.parse_args(["protect", "src", "--method", "nope"]))


def test_the_fit_and_evaluate_defaults_are_the_configs():
    """One owner per default: the options show what UCConfig / EvaluationConfig (TrainConfig) default to."""
    from uc_datasets.commands.cli import DEMO_DEFAULTS, build_parser
    from uc_datasets.commands.evaluate import add_evaluate_arguments
    from uc_datasets.evaluation.sweep import EvaluationConfig
    from uc_datasets.evaluation.victims import TrainConfig
    from uc_datasets.methods.uc.config import UCConfig

    args = build_parser(["protect"]).parse_args(["protect", "src"])
    config = UCConfig()
    for name in ("n_clusters", "epochs", "batch_size", "lr", "loss", "train_on", "parametrization", "permutation",
                 "working_size", "seed", "surrogate_image_size"):
        assert getattr(args, name) == getattr(config, name), name
    assert args.epsilon == config.epsilon_levels
    demo = build_parser(["demo"]).parse_args(["demo"])
    assert all(getattr(demo, k) == v for k, v in DEMO_DEFAULTS.items()) and demo.seed == config.seed
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args(["--clean", "c", "--protected", "p"])
    config, train = EvaluationConfig(), TrainConfig()
    for option, field in (("victims", "victims"), ("defenses", "defenses"), ("protected_fraction",
                          "protected_fractions"), ("mix_by", "mix_by"), ("seeds", "seeds"), ("encoder", "encoder"),
                          ("relabel_seed", "relabel_seed"), ("pseudo_labels", "pseudo_n_values"),
                          ("pseudo_encoder", "pseudo_encoder"), ("simclr_epochs", "simclr_epochs"),
                          ("simclr_batch_size", "simclr_batch_size"), ("width", "width")):
        assert getattr(args, option) == getattr(config, field), option
    for name in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "augment"):
        assert getattr(args, name) == getattr(config, name) == getattr(train, name), name
    assert args.stem == "auto" and config.small_input is None


def test_option_names_spell_none_and_true_as_the_command_line_does():
    from uc_datasets.commands.cli import option_names

    assert option_names("Pass label_column=... naming the label column, or label_column=None for label-agnostic "
                        "mode.") == ("Pass --label-column ... naming the label column, or leave out --label-column "
                                     "for label-agnostic mode.")
    assert option_names("label-agnostic mode (label_column=None) needs") == \
        "label-agnostic mode (leave out --label-column) needs"
    assert option_names("Pass overwrite=True, name='x' or revision='v2'") == \
        "Pass --overwrite, --config-name 'x' or --revision 'v2'"
    assert option_names("class_names=None, name_encoder=None") == \
        "leave out --class-names, leave out --name-encoder"


def test_protect_writes_the_dataset_card_into_the_saved_directory(tiny_clip, tmp_path):
    """A save_to_disk directory gets the same README.md card a push writes (issue 28 §3)."""
    ds = image_dataset(structured_images(12), [i % 3 for i in range(12)])
    ds.save_to_disk(str(tmp_path / "in"))
    rc = main(["protect", str(tmp_path / "in"), "--surrogate", tiny_clip, "--pattern", "block", "--label-column",
               "label", "--epsilon", "8", "--output-dir", str(tmp_path / "out")])
    assert rc == 0
    card = (tmp_path / "out" / "protected" / "README.md").read_text()
    assert card.startswith("---") and "uc_datasets:" in card and "unlearnable" in card


def test_the_demo_replaces_its_own_directory_but_protect_does_not():
    from uc_datasets.commands.cli import build_parser

    assert build_parser(["demo"]).parse_args(["demo"]).overwrite is True
    assert build_parser(["protect"]).parse_args(["protect", "src"]).overwrite is False
