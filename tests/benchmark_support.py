"""Helpers of the benchmark smoke tests: import a script from ``benchmarks/``, skip without its data.

Fashion-MNIST comes from the Debian package (``apt-get install -y dataset-fashion-mnist``) and
the surrogate is the offline EfficientNet-Lite0 (the ``imagenet`` extra).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def require_benchmark_data() -> None:
    """Skip the calling test module without the offline surrogate or Fashion-MNIST."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the imagenet extra (offline surrogate)")
    if not FASHION_MNIST.is_file():
        pytest.skip("needs: apt-get install -y dataset-fashion-mnist", allow_module_level=True)


def bench(name: str) -> ModuleType:
    """The benchmark script ``benchmarks/<name>.py`` as a module."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def run_main(module: ModuleType, argv: list[str]):
    """``module.main(argv)``, restoring torch's thread count: ``--threads`` sets it globally, and
    leaking it changes later tests' float sums (and so their bit-exact determinism checks)."""
    threads = torch.get_num_threads()
    try:
        return module.main(argv)
    finally:
        torch.set_num_threads(threads)
