"""A protector on disk: the directory format, its safe reading, and the rebuild of a pickled protector.

Files: ``config.json`` (``protector_type``, the method's config, surrogate identity, metadata)
and ``protector.safetensors`` (the perturbations and the fit-set content-key cache). Loading
never unpickles; a damaged directory raises :class:`InvalidProtectorError` naming the file.

This module sits below the protector contract (:mod:`uc_datasets.core.protector`): it reads
and writes plain parts (a JSON object and named tensors) and never imports the contract; a
protector class hands it its parts and rebuilds itself from them (``_from_parts``).

Example:
    >>> cfg, tensors, d = read_protector_dir("protector/")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "protector.safetensors"
_IMPORT_PID = os.getpid()
_BAD = "this is not a valid protector directory"


class InvalidProtectorError(ValueError):
    """A saved protector directory is damaged or not a protector; the message names the file."""


class _Entries(dict):
    """A dict of a saved protector's file whose missing keys raise :class:`InvalidProtectorError`."""

    def __init__(self, data: dict, file: Path):
        super().__init__(data)
        self.file = file

    def __missing__(self, key: str):
        raise InvalidProtectorError(f"{_BAD}: {self.file}: missing entry {key!r}")


def write_protector_dir(directory: str | os.PathLike, config: Mapping[str, Any],
                        tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``protector.safetensors`` into ``directory`` (created if missing).

    Example:
        >>> import tempfile
        >>> d = write_protector_dir(tempfile.mkdtemp(), {"protector_type": "x"}, {"deltas": torch.zeros(1)})
        >>> sorted(p.name for p in d.iterdir())
        ['config.json', 'protector.safetensors']
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / CONFIG_NAME).write_text(json.dumps(dict(config), indent=2, sort_keys=True))
    save_file(dict(tensors), str(d / WEIGHTS_NAME), metadata={"format": "pt"})
    return d


def read_protector_dir(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """``(config.json, tensors, directory)`` of a saved protector; a damaged one raises
    :class:`InvalidProtectorError` naming the file and what is wrong."""
    d = Path(path)
    if not (d / CONFIG_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"{d} is not a saved protector: expected {CONFIG_NAME} and {WEIGHTS_NAME} in it."
        )
    try:
        cfg = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidProtectorError(f"{_BAD}: {d / CONFIG_NAME}: not valid JSON ({err})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config", {}), dict):
        raise InvalidProtectorError(f"{_BAD}: {d / CONFIG_NAME}: expected a JSON object with a 'config' object")
    try:
        tensors = load_file(str(d / WEIGHTS_NAME))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise InvalidProtectorError(f"{_BAD}: {d / WEIGHTS_NAME}: cannot be read ({err}); is it truncated? "
                                    "Copy it again from where it was saved.") from None
    return _Entries(cfg, d / CONFIG_NAME), _Entries(tensors, d / WEIGHTS_NAME), d


@contextlib.contextmanager
def invalid_protector_errors(d: str | os.PathLike) -> Iterator[None]:
    """Turn the format errors of a rebuild from ``d``'s parts into :class:`InvalidProtectorError`.

    Example:
        >>> with invalid_protector_errors("protector/"):  # doctest: +SKIP
        ...     prot = UCProtector._from_parts(cfg, tensors)
    """
    try:
        yield
    except InvalidProtectorError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise InvalidProtectorError(f"{_BAD}: {d}: {err}") from None


def _restore_protector(cls: Any, cfg_json: str, tensor_bytes: bytes, state: dict) -> Any:
    """Rebuild a pickled protector of class ``cls`` from its parts (see ``BaseProtector.__reduce__``):
    ``cls._from_parts(config, tensors)``, then its runtime settings ``state``."""
    if os.getpid() != _IMPORT_PID and torch.get_num_threads() > 1:
        # A forked worker (``ds.map(..., num_proc=n)``): torch's OpenMP pool inherited from
        # the parent is not fork-safe and hangs at the first parallel op. One thread per
        # worker is also what num_proc parallelism wants.
        torch.set_num_threads(1)
    prot = cls._from_parts(json.loads(cfg_json), st_load(tensor_bytes))
    prot._set_pickle_state(state)
    return prot
