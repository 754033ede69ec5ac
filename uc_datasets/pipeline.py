"""The main job: fit a protector on a dataset, protect it, verify it, write everything out."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch

from uc_datasets._version import __version__
from uc_datasets.core.preview import save_preview
from uc_datasets.core.protector import BaseProtector
from uc_datasets.core.record import protection_record
from uc_datasets.core.verify import VerifyReport, verify
from uc_datasets.hub import write_protected_card
from uc_datasets.registry import fit_method, get_method

logger = logging.getLogger(__name__)

PROTECTOR_WARNING = (
    "This directory is the SECRET protector of a protected dataset. Anyone who holds it can\n"
    "subtract the protection. Never publish it, never push it to a public repo. The fit caches\n"
    "next to it (../clusters.safetensors, ../checkpoints/) are secret too.\n"
)


class VerificationError(RuntimeError):
    """The protected dataset failed :func:`uc_datasets.core.verify`; nothing was saved."""

    exit_code = 1  # a failed check on the command line


@dataclass
class ProtectOutputs:
    """Where :func:`protect_dataset` wrote things, plus what it measured."""

    output_dir: Path
    protected_dir: Path
    protector_dir: Path
    preview: Path
    summary: Path
    report: VerifyReport
    protector: BaseProtector
    protected: datasets.Dataset


def protect_dataset(ds: datasets.Dataset, output_dir: str | Path, *, image_column: str = "image",
                    progress: bool = True, map_batch_size: int = 64, accelerator=None, resume: bool = False,
                    num_workers: int = 0, extra_summary: dict | None = None, method: str = "uc",
                    label_column: str | None = None, overwrite: bool = False, **uc_kwargs) -> ProtectOutputs | None:
    """Fit Unlearnable Clusters on ``ds``, protect it with ``ds.map``, verify, and save.

    Writes ``protected/`` (``save_to_disk``), ``protector/`` (secret), ``preview.png``
    (clean / perturbation / protected) and ``run_summary.json`` under ``output_dir``, plus
    the fit's caches (``clusters.safetensors``, ``checkpoints/``: secret too).

    ``method`` picks a baseline of :mod:`uc_datasets.methods` instead of UC; ``uc_kwargs`` are
    then its keywords. ``label_column`` switches UC to its label-aware mode and a baseline to
    label-consistent mode.
    With an ``accelerator`` every process fits data-parallel (UC only); ``ds.map`` runs under
    ``main_process_first()`` and only the main process verifies and writes (the others
    return None).

    A failed run leaves nothing in an ``output_dir`` it created, or only what ``--resume``
    can use (``clusters.safetensors``, ``checkpoints/``). An ``output_dir`` that already holds
    ``protected/`` or ``protector/`` is refused before any work unless ``overwrite=True`` (or
    ``resume=True``, which continues the run they belong to): the protector is the secret of the
    published copy, and a new fit would replace it.

    Example:
        >>> out = protect_dataset(ds, "uc_output", surrogate="efficientnet-lite0", epochs=5)  # doctest: +SKIP
        >>> out.report.passed  # doctest: +SKIP
        True
    """
    out = Path(output_dir)
    earlier = [name for name in OUTPUTS if (out / name).exists()]
    if earlier and not (overwrite or resume):
        raise FileExistsError(
            f"{out} already holds {' and '.join(name + '/' for name in earlier)} of an earlier run (protector/ is "
            "the secret that removes its protection; a new run would replace it). Pass overwrite=True to replace "
            "them, or choose another directory (output_dir).")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    main = accelerator is None or accelerator.is_main_process
    try:
        return _protect_dataset(ds, out, image_column=image_column, progress=progress, map_batch_size=map_batch_size,
                                accelerator=accelerator, resume=resume, num_workers=num_workers,
                                extra_summary=extra_summary, method=method, label_column=label_column, **uc_kwargs)
    except BaseException:
        if created and main:
            _remove_unusable(out)
        raise


#: What a finished run writes that a new run in the same directory would replace.
OUTPUTS = ("protected", "protector")
#: What ``--resume`` reads from an output directory (see ``uc_datasets.methods.uc.fit``).
RESUMABLE = ("clusters.safetensors", "checkpoints")


def _remove_unusable(out: Path) -> None:
    """After a failed run in a directory it created: keep only what ``--resume`` can use, or nothing."""
    kept = [name for name in RESUMABLE if (out / name).exists()]
    for child in out.iterdir():
        if child.name not in kept:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    if kept:
        logger.warning("The run failed; kept %s in %s for --resume (secret: it holds the perturbations).",
                       ", ".join(kept), out)
    else:
        out.rmdir()


def _protect_dataset(ds: datasets.Dataset, out: Path, *, image_column: str, progress: bool, map_batch_size: int,
                     accelerator, resume: bool, num_workers: int, extra_summary: dict | None, method: str,
                     label_column: str | None, **uc_kwargs) -> ProtectOutputs | None:
    main = accelerator is None or accelerator.is_main_process
    t0 = time.perf_counter()
    run: dict = {}
    if get_method(method).distributed:
        run = {"accelerator": accelerator, "output_dir": str(out), "resume": resume, "num_workers": num_workers}
    elif accelerator is not None and accelerator.num_processes > 1:
        raise ValueError(f"method {method!r} fits in one process; run it with plain python "
                         "or `accelerate launch` with one process.")
    protector = fit_method(method, ds, image_column=image_column, label_column=label_column, progress=progress,
                           **run, **uc_kwargs)
    t1 = time.perf_counter()
    first = accelerator.main_process_first() if accelerator is not None else contextlib.nullcontext()
    with first:
        protected = ds.map(protector, batched=True, batch_size=map_batch_size, desc="protecting")
    t2 = time.perf_counter()
    if not main:
        accelerator.wait_for_everyone()
        return None
    report = verify(ds, protected, protector.config.epsilon, image_column=image_column, progress=progress)
    if not report.passed:
        raise VerificationError(f"verification failed, nothing was saved: {report.summary()}; "
                           f"first problems: {(report.violations + report.unchanged)[:5]}")
    protected_dir, protector_dir = out / "protected", out / "protector"
    for earlier in (protected_dir, protector_dir):  # overwrite=True or resume=True: no stale shards or files
        if earlier.exists():
            shutil.rmtree(earlier)
    protected.info.description = json.dumps({"uc_datasets": {
        "protected": True, **protection_record(protector), "version": __version__}})
    protected.save_to_disk(str(protected_dir))
    write_protected_card(protected_dir, protector, report, split=str(ds.split) if ds.split is not None else "train")
    protector.save_pretrained(protector_dir)
    (protector_dir / "SECRET_README.txt").write_text(PROTECTOR_WARNING)
    preview = save_preview(ds, protected, protector.config.epsilon, out / "preview.png", image_column=image_column)
    t3 = time.perf_counter()
    summary = {
        "uc_datasets_version": __version__,
        "method": protector.method,
        "surrogate": protector.surrogate_info["name"],
        "config": dataclasses.asdict(protector.config),
        "n_images": len(ds),
        "verify": report.to_dict() | {"summary": report.summary()},
        "visual_cost": {"psnr_db": report.psnr, "ssim": report.ssim},  # means over the luminance
        "seconds": {"fit": t1 - t0, "protect_map": t2 - t1, "verify_and_save": t3 - t2,
                    **{f"fit_{k}": v for k, v in protector.metadata["stats"]["seconds"].items()}},
        "fit_stats": {k: v for k, v in protector.metadata["stats"].items() if k != "seconds"},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mib": (torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
        "num_processes": 1 if accelerator is None else accelerator.num_processes,
        "mixed_precision": None if accelerator is None else str(accelerator.mixed_precision),
        **(extra_summary or {}),
        "paths": {"protected": str(protected_dir), "protector": str(protector_dir), "preview": str(preview)},
    }
    summary_path = out / "run_summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return ProtectOutputs(out, protected_dir, protector_dir, preview, summary_path, report, protector, protected)
