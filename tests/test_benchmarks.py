"""The GPU speed script runs end to end at a tiny size on the CPU."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_fit_tiny_on_cpu(tmp_path):
    gpu_fit = _load("gpu_fit")
    res = gpu_fit.main(["--tiny", "--quiet", "--output", str(tmp_path / "g.json")])
    saved = json.loads((tmp_path / "g.json").read_text())
    assert saved["device"] == "cpu" and len(saved["runs"]) == 2 == len(res["runs"])
    for run in saved["runs"]:
        assert run["fit_images_per_second"] > 0 and run["achieved_tflops"] > 0
        assert abs(sum(run["phase_share"].values()) - 1) < 1e-6
        assert run["surrogate_gflop_fwd_bwd_per_image"] > 0
    assert gpu_fit.bf16_peak("NVIDIA H100 80GB HBM3") == 989.0 and gpu_fit.bf16_peak("Tesla T4") is None
