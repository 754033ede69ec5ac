"""Protect under load: peak memory against N, and a map killed halfway then restarted.

Used by ``python benchmarks/speed.py --load`` (see its docstring). Every measurement runs in
a fresh ``python benchmarks/speed.py --load-child SPEC`` process, so its peak RSS is its own
and it can be killed like a real job.

- Data: N synthetic 64x64 RGB images (PNG), written once with ``Dataset.from_generator`` (the
  largest N; smaller N are contiguous ``select`` views of it, no copy).
- Protector: UC with the model-free ``tile`` pattern, fitted on 200 other synthetic images
  with the offline EfficientNet-Lite0 at 32 px; at map time every image is unseen, so each
  one goes through the surrogate (the realistic path).
- ``map``: ``ds.map(protector, batched=True, num_proc=2)`` into a cache file;
  ``iterable``: ``ds.to_iterable_dataset(num_shards=2).map(protector, batched=True)``, consumed
  batch by batch. Both hash every output PNG in order, so runs can be compared.
- Memory: ``ru_maxrss`` of the job (main process) and of its worker processes
  (``RUSAGE_CHILDREN``), which count memory-mapped Arrow pages read, and the peak of the
  anonymous RSS (``RssAnon``: heap, tensors, decoded images) of the job plus its workers,
  sampled every 0.1 s.
- Restart: the ``map`` job at the smallest N is SIGKILLed (with its workers) after half of
  its uninterrupted time, then run again on the same cache directory; the result must hash
  like the uninterrupted run, and every finished ``cache-*.arrow`` file must open with the
  full number of rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import _common

logger = logging.getLogger("speed.load")

IMAGE_SIZE = 64
FIT_IMAGES = 200
MAP_BATCH = 64
SCRIPT = Path(__file__).resolve().parent / "speed.py"


def synthetic_image(i: int) -> Any:
    """The ``i``-th synthetic 64x64 RGB image: a colour group, stripes and noise, seeded by ``i``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    g = i % 4
    xx = np.arange(IMAGE_SIZE, dtype=np.float32)[None, :, None]
    base = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    base[..., g % 3] = 170
    base = base + 40 * np.sin((xx + 5 * g) / (2 + g)) + rng.normal(0, 20, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def write_synthetic(path: Path, n: int, *, offset: int = 0) -> None:
    """``n`` synthetic images (indices ``offset..offset+n-1``) saved with ``save_to_disk``."""
    import datasets

    def rows():
        for i in range(offset, offset + n):
            yield {"image": synthetic_image(i), "label": i % 4}

    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    with tempfile.TemporaryDirectory(dir=path.parent) as cache:
        datasets.Dataset.from_generator(rows, features=feats, cache_dir=cache).save_to_disk(str(path))


def fit_protector(data_dir: Path, out_dir: Path) -> None:
    """Fit the tile protector on the 200 fit images and save it."""
    import datasets

    from uc_datasets import UnlearnableClusters

    ds = datasets.load_from_disk(str(data_dir))
    uc = UnlearnableClusters(surrogate="efficientnet-lite0", surrogate_image_size=32, pattern="tile",
                             n_clusters=4, epsilon=8 / 255, seed=0, progress=False)
    uc.fit(ds).save_pretrained(out_dir)


class AnonPeak:
    """Peak of the summed ``RssAnon`` of this process and its children, sampled in a thread."""

    def __init__(self, interval: float = 0.1):
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(), interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _anon_mib(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [self.proc.pid] + [c.pid for c in self.proc.children(recursive=True)]
            self.peak = max(self.peak, sum(self._anon_mib(p) for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _digest_rows(batches) -> tuple[str, int]:
    """SHA-256 over the PNG bytes of every image of ``batches`` (dicts of lists), and the row count."""
    import io

    h, n = hashlib.sha256(), 0
    for batch in batches:
        for img in batch["image"]:
            if isinstance(img, dict):
                data = img["bytes"]
            else:
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                data = buf.getvalue()
            h.update(data)
            n += 1
    return h.hexdigest(), n


def child(spec: dict) -> dict:
    """One measured job (runs in its own process): ``map`` or ``iterable`` over the first N images."""
    import resource

    import datasets

    from uc_datasets import load_protector

    datasets.disable_progress_bars()
    protector = load_protector(spec["protector_dir"])
    ds = datasets.load_from_disk(spec["data_dir"]).select(range(spec["n"]))
    t0 = time.perf_counter()
    with AnonPeak() as anon:
        if spec["mode"] == "map":
            out = ds.map(protector, batched=True, batch_size=MAP_BATCH, num_proc=2,
                         cache_file_name=str(Path(spec["cache_dir"]) / "protected.arrow"))
            seconds = time.perf_counter() - t0
            raw = out.cast_column("image", datasets.Image(decode=False))
            digest, rows = _digest_rows(raw.iter(batch_size=1000))
        else:
            it = ds.to_iterable_dataset(num_shards=2).map(protector, batched=True, batch_size=MAP_BATCH)
            digest, rows = _digest_rows(it.iter(batch_size=MAP_BATCH))
            seconds = time.perf_counter() - t0
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"mode": spec["mode"], "n": spec["n"], "rows": rows, "seconds": seconds,
            "images_per_second": rows / max(seconds, 1e-9), "sha256": digest,
            "peak_rss_main_mib": self_kib / 1024, "peak_rss_workers_mib": children_kib / 1024,
            "peak_anon_rss_total_mib": anon.peak}


def _spawn(spec: dict) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), "--load-child", json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def run_job(spec: dict) -> dict:
    """Run one child job to the end; its JSON result, or ``{"error": ...}``."""
    proc = _spawn(spec)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return {"mode": spec["mode"], "n": spec["n"], "error": err.strip().splitlines()[-1:] or ["?"]}
    return json.loads(out.strip().splitlines()[-1])


def check_cache_dir(cache_dir: Path) -> dict:
    """Open every finished Arrow cache file; list leftovers of a killed run."""
    import datasets

    finished, leftovers = {}, []
    for f in sorted(cache_dir.iterdir()):
        if f.name.endswith(".arrow") and not f.name.startswith("tmp"):
            finished[f.name] = datasets.Dataset.from_file(str(f)).num_rows
        else:
            leftovers.append(f.name)
    return {"finished_files": finished, "other_files": leftovers}


def restart_check(spec: dict, full_seconds: float, reference_sha: str) -> dict:
    """Kill the ``map`` job halfway (SIGKILL to its process group), run it again, compare."""
    cache = Path(spec["cache_dir"])
    proc = _spawn(spec)
    time.sleep(max(1.0, full_seconds / 2))
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    after_kill = check_cache_dir(cache)
    rerun = run_job(spec)
    return {"killed_after_seconds": full_seconds / 2, "was_running_when_killed": killed,
            "cache_after_kill": after_kill, "cache_after_restart": check_cache_dir(cache),
            "restart_seconds": rerun.get("seconds"), "restart_sha256": rerun.get("sha256"),
            "identical_to_uninterrupted": rerun.get("sha256") == reference_sha, "restart_error": rerun.get("error")}


def measure_load(sizes: list[int], *, workdir: Path | None = None, restart: bool = True) -> dict:
    """Protect ``sizes`` images each way, then the kill-and-restart check at the smallest size."""
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(tmp.name if tmp else workdir)
    try:
        data, fit, prot = root / "data", root / "fit", root / "protector"
        t0 = time.perf_counter()
        write_synthetic(data, max(sizes))
        write_synthetic(fit, FIT_IMAGES, offset=10**7)  # disjoint from the protected images
        fit_protector(fit, prot)
        logger.info("data and protector ready in %.0f s", time.perf_counter() - t0)
        rows = []
        for n in sizes:
            for mode in ("map", "iterable"):
                cache = root / f"cache-{mode}-{n}"
                cache.mkdir()
                spec = {"mode": mode, "n": n, "data_dir": str(data), "protector_dir": str(prot),
                        "cache_dir": str(cache)}
                rows.append(run_job(spec))
                logger.info("%s", rows[-1])
        same = {n: len({r.get("sha256") for r in rows if r["n"] == n}) == 1 for n in sizes}
        result: dict[str, Any] = {"rows": rows, "map_and_iterable_identical": same}
        if restart:
            n = min(sizes)
            ref = next(r for r in rows if r["n"] == n and r["mode"] == "map")
            cache = root / f"cache-restart-{n}"
            cache.mkdir()
            spec = {"mode": "map", "n": n, "data_dir": str(data), "protector_dir": str(prot),
                    "cache_dir": str(cache)}
            result["restart"] = {"n": n, **restart_check(spec, ref.get("seconds", 10.0), ref.get("sha256"))}
        return result
    finally:
        if tmp:
            tmp.cleanup()


def load_table(result: dict) -> str:
    """Markdown table of the load rows."""
    def f(v: float | None, spec: str = ".0f") -> str:
        return "n/a" if v is None else format(v, spec)

    rows = [[r["mode"], r["n"], f(r.get("seconds"), ".1f"), f(r.get("images_per_second")),
             f(r.get("peak_rss_main_mib")), f(r.get("peak_rss_workers_mib")), f(r.get("peak_anon_rss_total_mib")),
             r.get("error", "")] for r in result["rows"]]
    text = _common.markdown_table(["mode", "N", "seconds", "images/s", "peak RSS main MiB",
                                   "peak RSS worker MiB", "peak anon RSS total MiB", "error"], rows)
    if "restart" in result:
        r = result["restart"]
        text += (f"\nrestart at N={r['n']}: killed after {r['killed_after_seconds']:.0f} s "
                 f"(running: {r['was_running_when_killed']}), identical after restart: "
                 f"{r['identical_to_uninterrupted']}; cache after restart: {r['cache_after_restart']}\n")
    return text
