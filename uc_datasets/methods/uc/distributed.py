"""Multi-process helpers on top of accelerate: sharded features, broadcast, checkpoints.

Everything here also works in a single plain process (``accelerator=None`` or a
one-process ``Accelerator``), so the library has one code path.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
#: Why a resume is refused (after the path of what was found).
OTHER_RUN = ("is from a different configuration or dataset (another epsilon, number of clusters, family, seed or "
             "set of images); use a new output directory or run without --resume.")
TRAINER_STATE = "trainer_state.json"


def world(accelerator) -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an accelerator."""
    if accelerator is None:
        return 0, 1
    return accelerator.process_index, accelerator.num_processes


def is_main(accelerator) -> bool:
    return accelerator is None or accelerator.is_main_process


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of rank ``rank``: shards differ in size by at most one.

    Example:
        >>> [shard_bounds(5, r, 2) for r in range(2)]
        [(0, 3), (3, 5)]
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def gather_rows(accelerator, local: torch.Tensor, n_total: int) -> torch.Tensor:
    """All-gather contiguous per-rank row shards into the original order, dropping padding.

    Each rank holds rows ``shard_bounds(n_total, rank, world)``. accelerate pads the shards
    to the largest size for the collective (``pad_across_processes``) and the padding is
    removed, so no row is duplicated or dropped.
    """
    rank, ws = world(accelerator)
    if ws == 1:
        return local
    sizes = [shard_bounds(n_total, r, ws) for r in range(ws)]
    longest = max(b - a for a, b in sizes)
    gathered = accelerator.gather(accelerator.pad_across_processes(local.contiguous(), dim=0))  # (ws * longest, ...)
    parts = [gathered[r * longest : r * longest + (b - a)] for r, (a, b) in enumerate(sizes)]
    return torch.cat(parts)


def broadcast_array(accelerator, array: np.ndarray | None) -> np.ndarray:
    """The main process's array, on every process."""
    if accelerator is None or accelerator.num_processes == 1:
        return array
    from accelerate.utils import broadcast_object_list

    box = [array if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


# ----------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(accelerator, root: Path, epoch: int, trainer_state: dict, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, keep: int = 2) -> Path:
    """``accelerator.save_state`` of epoch ``epoch`` plus our ``trainer_state.json``.

    Without an accelerator the same two files accelerate writes (``model.safetensors``,
    ``optimizer.bin``) are written directly. The JSON is written last, by the main process:
    a checkpoint without it is incomplete (killed mid-save) and is ignored on resume. Older
    checkpoints beyond ``keep`` are removed.
    """
    path = Path(root) / CHECKPOINT_DIR / f"epoch_{epoch:05d}"
    if accelerator is None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
        torch.save(optimizer.state_dict(), path / "optimizer.bin")
    else:
        accelerator.save_state(str(path), safe_serialization=True)
        accelerator.wait_for_everyone()
    if is_main(accelerator):
        tmp = path / (TRAINER_STATE + ".tmp")
        tmp.write_text(json.dumps(trainer_state))
        tmp.replace(path / TRAINER_STATE)
        done = sorted(p for p in path.parent.glob("epoch_*") if (p / TRAINER_STATE).is_file())
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return path


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    done = sorted(p for p in (Path(root) / CHECKPOINT_DIR).glob("epoch_*") if (p / TRAINER_STATE).is_file())
    return done[-1] if done else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, accelerator=None,
                    run_key: str | None = None) -> dict:
    """Restore model and optimizer written by :func:`save_checkpoint`; return the trainer state.

    The trainer state is read first: a checkpoint of another configuration or dataset
    (``run_key`` differs) is refused with the fix before any weight is touched. With an
    accelerator the state is restored by ``accelerator.load_state`` (so that wrapped and sharded
    models restore as accelerate saved them); it reads the safetensors weights and every
    other file with ``weights_only=True``. Our randomness is derived from the seed, the epoch
    and the step, so the RNG states it also restores change nothing.
    """
    path = Path(path)
    trainer_state = json.loads((path / TRAINER_STATE).read_text())
    if run_key is not None and trainer_state.get("run_key") != run_key:
        raise ValueError(f"checkpoint {path} {OTHER_RUN}")
    if accelerator is not None:
        accelerator.load_state(str(path))
        return trainer_state
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    optimizer.load_state_dict(torch.load(path / "optimizer.bin", map_location="cpu", weights_only=True))
    return trainer_state
