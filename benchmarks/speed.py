"""Fit and protect speed of uc_datasets, as ratios measured in one run on one machine.

Fit: ``UnlearnableClusters(...).fit`` (the default ``train_on="members"``, and
``train_on="all"``) against the reference code's schedule re-implemented in
``benchmarks/reference_schedule.py`` (one cluster at a time, each over the whole dataset),
with the same Fashion-MNIST images, surrogate (EfficientNet-Lite0), batch size and epochs.
Reported: wall time, training time, surrogate forward+backward passes and passes per second.

Protect: ``ds.map(uc_protect, batched=True)`` with the fit-set cluster cache and with the
assignment recomputed by the surrogate (``use_cache = False``), against a plain ``ds.map``
that decodes and re-encodes the same images as PNG.

Every measurement runs in its own child process (``forkserver`` with torch, datasets and
uc_datasets preloaded, or ``spawn``). The child imports what it needs, resets its peak RSS
(``/proc/self/clear_refs``), then loads the data and does the work, and reports
``getrusage(RUSAGE_SELF).ru_maxrss`` (imports included) and its RSS before the work.
Passes per second are training-phase passes over training-phase seconds, for both sides.

    python benchmarks/speed.py --profile smoke   # seconds (used by the tests)
    python benchmarks/speed.py --profile cpu     # estimated 10-13 minutes on 2 cores
    python benchmarks/speed.py --profile paper   # GPU: 10,000 images at 224 px
    python benchmarks/speed.py --load            # peak RSS against N (5k, 20k, 50k) and a killed map

``--load`` protects synthetic 64-px images with ``ds.map(num_proc=2)`` and through an
``IterableDataset`` at each ``--load-sizes`` N, records peak RSS against N, and kills a map
halfway and restarts it (details in ``benchmarks/_load.py``); it writes
``benchmarks/results/load.json`` (or ``--output``).

Writes ``benchmarks/results/speed.json`` (or ``--output``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import _common

if TYPE_CHECKING:
    import datasets
    import torch

    from uc_datasets.core.surrogates import Surrogate

logger = logging.getLogger("speed")

#: Imported once by the fork server, and by every child before its measured work: one-time
#: import costs (torch._dynamo on the first optimiser, scikit-learn on the first K-means) are
#: not fit time.
PRELOAD = ["torch", "torch._dynamo", "numpy", "sklearn.cluster", "datasets", "uc_datasets", "uc_datasets.methods.uc.fit",
           "reference_schedule", "_common"]


@dataclass(frozen=True)
class SpeedProfile:
    """Sizes of one speed run."""

    n_images: int
    surrogate_image_size: int | None  # None: the surrogate's own 224 px
    n_clusters: int
    epochs: int
    batch_size: int
    ngf: int = 64
    n_blocks: int = 6
    map_batch_size: int = 1000


PROFILES = {
    # Seconds: a tiny generator and 20 images; checks the plumbing, not the speed.
    "smoke": SpeedProfile(n_images=20, surrogate_image_size=32, n_clusters=2, epochs=1, batch_size=10, ngf=8,
                          n_blocks=1, map_batch_size=10),
    # Estimated 10-13 minutes on 2 cores (the reference and train_on="all" each make 20,000 passes).
    "cpu": SpeedProfile(n_images=1000, surrogate_image_size=64, n_clusters=10, epochs=2, batch_size=250),
    # GPU: 10,000 images, surrogate at its native 224 px, the reference batch.
    "paper": SpeedProfile(n_images=10_000, surrogate_image_size=None, n_clusters=10, epochs=1, batch_size=256),
}


# --- child-process jobs (each reports its own peak RSS) ------------------------------------


def _child_setup(spec: dict) -> tuple[torch.device, float]:
    """Threads, logging and imports in a child, then reset its peak RSS to the current RSS.

    Returns (device, RSS before the measured work). After the reset, ``ru_maxrss`` is the
    peak of the measured work (imports included, as resident memory), whatever the start
    method (a forked child otherwise inherits the fork server's peak).
    """
    import importlib

    import torch

    _common.setup(spec["threads"], verbose=False)
    for name in PRELOAD:
        importlib.import_module(name)
    _common.reset_peak_rss()
    return torch.device(spec["device"]), _common.rss_mib()


def _load_surrogate(spec: dict, device: torch.device) -> Surrogate:
    """EfficientNet-Lite0 at the profile's input size, on ``device``."""
    from uc_datasets.core.surrogates import load_surrogate

    prof = spec["profile"]
    return load_surrogate("efficientnet-lite0", image_size=prof["surrogate_image_size"]).to(device)


def _finish(result: dict, rss_before: float) -> dict:
    """Add the RSS before the work and the peak RSS (``ru_maxrss``) to a child's result."""
    result.update(rss_before_mib=rss_before, peak_rss_mib=_common.peak_rss_mib())
    return result


def job_fit_library(spec: dict) -> dict:
    """``UnlearnableClusters.fit`` with ``train_on=spec['train_on']``; saves the protector if asked."""
    from uc_datasets import UnlearnableClusters

    device, rss0 = _child_setup(spec)
    prof = spec["profile"]
    ds = _common.load_balanced_fashion_mnist("train", prof["n_images"])
    surrogate = _load_surrogate(spec, device)
    uc = UnlearnableClusters(surrogate=surrogate, device=str(device), n_clusters=prof["n_clusters"],
                             epsilon=16 / 255, epochs=prof["epochs"], batch_size=prof["batch_size"],
                             surrogate_image_size=prof["surrogate_image_size"], ngf=prof["ngf"],
                             n_blocks=prof["n_blocks"], train_on=spec["train_on"], seed=0,
                             progress=spec["progress"])
    t0 = time.perf_counter()
    protector = uc.fit(ds)
    wall = time.perf_counter() - t0
    if spec.get("save_dir"):
        protector.save_pretrained(spec["save_dir"])
    stats = protector.metadata["stats"]
    passes = prof["n_images"] * prof["epochs"] * (prof["n_clusters"] if spec["train_on"] == "all" else 1)
    return _finish({
        "wall_seconds": wall,
        "train_seconds": stats["seconds"]["train"],
        "phase_seconds": stats["seconds"],
        "surrogate_fwd_bwd_passes": passes,
        "surrogate_fwd_bwd_per_second": passes / stats["seconds"]["train"],
        "library_reported_images_per_second": stats["surrogate_fwd_bwd_images_per_second"],
        "attack_success": stats["attack_success"],
        "clusters": protector.cache_clusters.tolist(),
    }, rss0)


def job_fit_reference(spec: dict) -> dict:
    """The reference schedule (``reference_schedule.fit_reference``) on the same data and sizes."""
    from reference_schedule import fit_reference

    device, rss0 = _child_setup(spec)
    prof = spec["profile"]
    ds = _common.load_balanced_fashion_mnist("train", prof["n_images"])
    surrogate = _load_surrogate(spec, device)
    t0 = time.perf_counter()
    result = fit_reference(ds, surrogate=surrogate, n_clusters=prof["n_clusters"], epsilon=16 / 255,
                           epochs=prof["epochs"], batch_size=prof["batch_size"], ngf=prof["ngf"],
                           n_blocks=prof["n_blocks"], seed=0, device=device, progress=spec["progress"])
    wall = time.perf_counter() - t0
    stats = result.stats
    return _finish({
        "wall_seconds": wall,
        "train_seconds": stats["seconds"]["train"],
        "phase_seconds": stats["seconds"],
        "surrogate_fwd_bwd_passes": stats["surrogate_fwd_bwd_passes"],
        "surrogate_fwd_bwd_per_second": stats["surrogate_fwd_bwd_passes"] / stats["seconds"]["train"],
        "attack_success": stats["attack_success"],
        "clusters": result.labels.tolist(),
    }, rss0)


def reencode_png(batch: dict) -> dict:
    """The plain map: decode every image and return a new one (``datasets`` stores it as PNG)."""
    import numpy as np
    from PIL import Image

    return {"image": [Image.fromarray(np.asarray(img)) for img in batch["image"]]}


def _digest(ds: datasets.Dataset) -> str:
    """SHA-256 over the stored bytes of every image, in order."""
    import datasets

    h = hashlib.sha256()
    for value in ds.cast_column("image", datasets.Image(decode=False))["image"]:
        h.update(value["bytes"])
    return h.hexdigest()


def job_map(spec: dict) -> dict:
    """One ``ds.map``: ``plain`` (decode + PNG re-encode), ``cached`` or ``recomputed`` UC assignment."""
    from uc_datasets import load_protector

    device, rss0 = _child_setup(spec)
    prof = spec["profile"]
    ds = _common.load_balanced_fashion_mnist("train", prof["n_images"])
    fn: Callable = reencode_png
    if spec["mode"] != "plain":
        fn = load_protector(spec["protector_dir"], surrogate=_load_surrogate(spec, device))
        fn.use_cache = spec["mode"] == "cached"
    t0 = time.perf_counter()
    out = ds.map(fn, batched=True, batch_size=prof["map_batch_size"], load_from_cache_file=False,
                 desc=f"map ({spec['mode']})")
    seconds = time.perf_counter() - t0
    return _finish({"seconds": seconds, "images_per_second": len(ds) / max(seconds, 1e-9),
                    "output_sha256": _digest(out)}, rss0)


# --- orchestration --------------------------------------------------------------------------


def run_child(ctx: mp.context.BaseContext, fn: Callable[[dict], dict], spec: dict) -> dict:
    """Run ``fn(spec)`` in a fresh child process; a failure is recorded, not raised."""
    name = spec.get("mode") or spec.get("train_on") or fn.__name__
    logger.info("child: %s %s", fn.__name__, name)
    t0 = time.perf_counter()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            result = pool.submit(fn, spec).result()
    except Exception as err:  # noqa: BLE001 - recorded as measured
        logger.exception("%s failed", fn.__name__)
        result = {"error": f"{type(err).__name__}: {err}"}
    result["child_seconds"] = time.perf_counter() - t0
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def measure(profile: SpeedProfile, *, threads: int | None, device: str, start_method: str,
            include_all: bool, progress: bool) -> dict:
    """All fit and protect measurements of one run, each in its own child process."""
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    base = {"profile": asdict(profile), "threads": threads, "device": device, "progress": progress}
    fit: dict[str, dict] = {}
    protect: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fit["library"] = run_child(ctx, job_fit_library, {**base, "train_on": "members", "save_dir": tmp})
        if include_all:
            fit["library_all"] = run_child(ctx, job_fit_library, {**base, "train_on": "all"})
        fit["reference"] = run_child(ctx, job_fit_reference, base)
        for mode in ("plain", "cached", "recomputed"):
            if mode != "plain" and "error" in fit["library"]:
                protect[mode] = {"error": "no protector: the library fit failed"}
                continue
            protect[mode] = run_child(ctx, job_map, {**base, "mode": mode, "protector_dir": tmp})
    ref, lib = fit["reference"], fit["library"]
    same = lib.get("clusters") is not None and lib.get("clusters") == ref.get("clusters")
    for r in fit.values():
        r.pop("clusters", None)
    ratios = {
        "fit_wall_reference_over_library": _ratio(ref.get("wall_seconds"), lib.get("wall_seconds")),
        "train_reference_over_library": _ratio(ref.get("train_seconds"), lib.get("train_seconds")),
        "passes_per_second_library_over_reference": _ratio(lib.get("surrogate_fwd_bwd_per_second"),
                                                            ref.get("surrogate_fwd_bwd_per_second")),
        "peak_rss_library_over_reference": _ratio(lib.get("peak_rss_mib"), ref.get("peak_rss_mib")),
        "same_clusters_library_and_reference": same,
    }
    if "library_all" in fit:
        la = fit["library_all"]
        ratios["fit_wall_reference_over_library_all"] = _ratio(ref.get("wall_seconds"), la.get("wall_seconds"))
        ratios["passes_per_second_library_all_over_reference"] = _ratio(
            la.get("surrogate_fwd_bwd_per_second"), ref.get("surrogate_fwd_bwd_per_second"))
    plain = protect["plain"]
    for mode in ("cached", "recomputed"):
        ratios[f"map_{mode}_over_plain_seconds"] = _ratio(protect[mode].get("seconds"), plain.get("seconds"))
        ratios[f"map_{mode}_over_plain_peak_rss"] = _ratio(protect[mode].get("peak_rss_mib"),
                                                          plain.get("peak_rss_mib"))
    c, r = protect["cached"].get("output_sha256"), protect["recomputed"].get("output_sha256")
    ratios["cached_and_recomputed_outputs_identical"] = c is not None and c == r
    return {"fit": fit, "protect": protect, "ratios": ratios}


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def report_table(results: dict) -> str:
    """Markdown tables of the fit and protect measurements with their ratios."""
    fit, protect, ratios = results["fit"], results["protect"], results["ratios"]
    names = {"library": "library fit (train_on=members)", "library_all": "library fit (train_on=all)",
             "reference": "reference schedule"}
    ref = fit["reference"]
    rows = []
    for key, r in fit.items():
        rows.append([names[key], _fmt(r.get("wall_seconds")), _fmt(r.get("train_seconds")),
                     r.get("surrogate_fwd_bwd_passes", "n/a"), _fmt(r.get("surrogate_fwd_bwd_per_second")),
                     _fmt(_ratio(ref.get("wall_seconds"), r.get("wall_seconds")), ".2f"),
                     _fmt(r.get("attack_success"), ".3f"), _fmt(r.get("peak_rss_mib"), ".0f"),
                     r.get("error", "")])
    text = _common.markdown_table(
        ["fit", "wall s", "train s", "surrogate passes", "passes/s", "reference wall / this wall",
         "attack success", "peak RSS MiB", "error"], rows)
    plain = protect["plain"]
    rows = [[f"ds.map: {k}", _fmt(r.get("seconds"), ".2f"), _fmt(r.get("images_per_second"), ".0f"),
             _fmt(_ratio(r.get("seconds"), plain.get("seconds")), ".2f"), _fmt(r.get("rss_before_mib"), ".0f"),
             _fmt(r.get("peak_rss_mib"), ".0f"), r.get("error", "")] for k, r in protect.items()]
    text += "\n" + _common.markdown_table(
        ["protect", "seconds", "images/s", "time / plain", "RSS before MiB", "peak RSS MiB", "error"], rows)
    text += (f"\nsame clusters (library vs reference): {ratios['same_clusters_library_and_reference']}; "
             f"cached and recomputed outputs identical: {ratios['cached_and_recomputed_outputs_identical']}\n")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--n-images", type=int, default=None, help="override the profile's number of images")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads per child (default: torch's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--start-method", choices=["forkserver", "spawn"], default="forkserver",
                   help="how children start (forkserver preloads torch/datasets/uc_datasets once)")
    p.add_argument("--no-library-all", action="store_true", help="skip the train_on='all' library fit")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--output", default=None, help="results file (default: results/speed.json, or load.json)")
    p.add_argument("--load", action="store_true", help="the load run instead: peak RSS against N, killed map")
    p.add_argument("--load-sizes", type=int, nargs="+", default=[5_000, 20_000, 50_000],
                   help="numbers of images of the load run (default: %(default)s)")
    p.add_argument("--load-child", help=argparse.SUPPRESS)  # internal: one measured job of the load run
    return p.parse_args(argv)


def load_main(args: argparse.Namespace) -> dict:
    """The ``--load`` run: write the JSON and print the table; returns what was written."""
    import _load

    _common.setup(1)
    results = _load.measure_load(sorted(args.load_sizes))
    payload = {**_common.run_record(), "profile": "load", "settings": {
        "image_size": _load.IMAGE_SIZE, "map_batch_size": _load.MAP_BATCH, "num_proc": 2, "pattern": "tile",
        "surrogate": "efficientnet-lite0 at 32 px", "omp_threads": 1}, **results}
    path = _common.write_json(args.output or _common.RESULTS_DIR / "load.json", payload)
    print(_load.load_table(results))
    logger.info("wrote %s", path)
    return payload


def main(argv: list[str] | None = None) -> dict:
    """Run the speed benchmark and write the JSON; returns what was written."""
    import torch

    args = parse_args(argv)
    if args.load_child:
        import _load

        print(json.dumps(_load.child(json.loads(args.load_child))))
        return {}
    if args.load:
        return load_main(args)
    _common.setup(args.threads)
    profile = PROFILES[args.profile]
    profile = replace(profile, n_images=args.n_images or profile.n_images, epochs=args.epochs or profile.epochs)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    logger.info("speed benchmark, profile %s: %s on %s", args.profile, profile, device)
    results = measure(profile, threads=args.threads, device=device, start_method=args.start_method,
                      include_all=not args.no_library_all, progress=not args.no_progress)
    payload = {**_common.run_record(), "profile": args.profile, "settings": {
        **asdict(profile), "surrogate": "efficientnet-lite0", "epsilon": "16/255", "loss": "kl",
        "parametrization": "generator", "device": device, "threads_per_child": args.threads,
        "start_method": args.start_method, "dataset": "Fashion-MNIST train (Debian package), balanced subset"},
        **results}
    path = _common.write_json(args.output or _common.RESULTS_DIR / "speed.json", payload)
    print(report_table(results))
    logger.info("wrote %s", path)
    return payload


if __name__ == "__main__":
    main()
