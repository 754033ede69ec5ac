"""Helpers shared by the benchmark scripts: setup, data, machine record, results files.

Nothing here measures anything by itself; the scripts own their measurements.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uc_datasets.evaluation.reporting import markdown_table, write_json

if TYPE_CHECKING:
    import datasets

__all__ = ["APT_HINT", "RESULTS_DIR", "Stopwatch", "load_balanced_fashion_mnist", "markdown_table", "peak_rss_mib",
           "reset_peak_rss", "rss_mib", "run_record", "setup", "write_json"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
APT_HINT = "apt-get install -y dataset-fashion-mnist"


def setup(threads: int | None, *, verbose: bool = False) -> None:
    """Configure logging and the number of torch threads (None: torch's default, all cores)."""
    import torch

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("datasets", "transformers", "accelerate", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if threads is not None:
        torch.set_num_threads(threads)


def command_line() -> str:
    """The command that produced a results file, as it could be pasted into a shell."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, torch/datasets versions, device and package version."""
    import datasets
    import torch

    import uc_datasets

    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "datasets": datasets.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "uc_datasets": uc_datasets.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_record() -> dict[str, Any]:
    """What every results file starts with: command, machine, date (UTC)."""
    return {
        "command": command_line(),
        "machine": machine_info(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def load_balanced_fashion_mnist(split: str, n: int, skip: int = 0) -> datasets.Dataset:
    """``core.sources.load_balanced_fashion_mnist`` (class-balanced subsets; ``skip=n_train`` gives
    a validation set disjoint from the ``skip=0`` subset), exiting with the apt command when the
    Debian package is missing."""
    from uc_datasets.core.sources import load_balanced_fashion_mnist as load

    try:
        return load(split, n, skip)
    except FileNotFoundError as err:
        raise SystemExit(f"{err}\nThe benchmarks need the Debian package: {APT_HINT}") from None


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc; 0 if unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ``/proc/self/clear_refs``).

    Resets both ``VmHWM`` and ``getrusage(...).ru_maxrss``; returns False where unsupported.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``getrusage(RUSAGE_SELF).ru_maxrss``)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
