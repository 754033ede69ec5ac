"""The registry: lazy name -> class tables that agree with the classes, and a load_protector that
imports only the protector class a config.json names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uc_datasets.core.persistence import InvalidProtectorError
from uc_datasets.registry import METHODS, PROTECTOR_TYPES, LazyClasses, get_method, load_protector, protector_class

FIXTURES = Path(__file__).parent / "fixtures" / "saved_protectors"
HEAVY = ("datasets", "transformers", "accelerate", "sklearn")


def test_every_key_is_its_class_own_name():
    """The keys are written in registry.py beside the loaders; a class renamed elsewhere fails here."""
    assert {k: cls.protector_type for k, cls in PROTECTOR_TYPES.items()} == {k: k for k in PROTECTOR_TYPES}
    assert {k: cls.name for k, cls in METHODS.items()} == {k: k for k in METHODS}
    assert protector_class("baseline-synper").__name__ == "SynPerProtector"
    with pytest.raises(ValueError, match="unknown protector_type 'nope'.*known: \\['baseline-perturbations'"):
        protector_class("nope")


def test_lazy_classes_import_on_first_access_only():
    calls = []

    def load():
        calls.append(1)
        return int

    classes = LazyClasses({"int": load})
    assert list(classes) == ["int"] and "int" in classes and len(classes) == 1 and calls == []
    assert classes["int"] is int and classes["int"] is int and calls == [1]
    with pytest.raises(KeyError):
        classes["float"]


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


_REPORT = ("import json, sys; print(json.dumps({'heavy': [m for m in %r if m in sys.modules], "
           "'ours': sorted(m for m in sys.modules if m.startswith('uc_datasets.'))}))" % (HEAVY,))


def test_importing_load_protector_imports_no_method_and_nothing_heavy():
    got = _run("from uc_datasets import load_protector; " + _REPORT)
    assert got["heavy"] == [] and "torch" not in got["ours"]
    assert not [m for m in got["ours"] if m.startswith("uc_datasets.methods")], got["ours"]


def test_a_label_aware_protector_loads_and_maps_without_transformers_or_training_code():
    d = FIXTURES / "uc_label_aware"
    got = _run("import numpy as np; from PIL import Image; from uc_datasets import load_protector; "
               f"p = load_protector({str(d)!r}); d = {str(d)!r}; "
               "x, y = np.load(d + '/inputs.npy'), np.load(d + '/labels.npy'); "
               "out = p.protect_images([Image.fromarray(a) for a in x], labels=y.tolist()); "
               "assert np.array_equal(np.stack([np.asarray(i) for i in out]), np.load(d + '/outputs.npy')); "
               + _REPORT)
    assert got["heavy"] == [], got["heavy"]
    methods = [m for m in got["ours"] if m.startswith("uc_datasets.methods")]
    assert "uc_datasets.methods.uc.protector" in methods
    for module in ("uc_datasets.methods.uc.fit", "uc_datasets.methods.uc.training", "uc_datasets.methods.baseline",
                   "uc_datasets.methods.eminn", "uc_datasets.methods.uc.unlearnable_clusters"):
        assert module not in methods, module


def test_get_method_imports_only_that_method():
    got = _run("from uc_datasets.registry import get_method; get_method('synper'); " + _REPORT)
    methods = {m for m in got["ours"] if m.startswith("uc_datasets.methods")}
    assert "uc_datasets.methods.synper" in methods and "uc_datasets.methods.uc.unlearnable_clusters" not in methods
    assert get_method("EMinN_classwise").names == ("EMinN-classwise",)


def test_an_unknown_protector_type_is_an_invalid_directory(tmp_path):
    import shutil

    d = tmp_path / "p"
    shutil.copytree(FIXTURES / "uc_label_free", d)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "protector_type": "from-the-future"}))
    with pytest.raises(InvalidProtectorError, match=r"not a valid protector directory: .*p: unknown protector_type"):
        load_protector(d)
