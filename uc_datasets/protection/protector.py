"""The fitted protector: perturbations, centres and config, callable by ``datasets.map``.

A protector is a **secret**: whoever holds it can subtract the perturbations. Save it
with :meth:`UCProtector.save_pretrained`, never publish it.

Files: ``config.json`` (settings, surrogate identity, permutation, loss curves, stats) and
``protector.safetensors`` (deltas, centres and the fit-set assignment cache). Loading
never unpickles.

:class:`BaseProtector` owns what every protector shares (the ``datasets.map`` callable,
lossless application, save/load, the pickle fingerprint, the private Hub push);
:class:`UCProtector` and the baseline protectors of :mod:`uc_datasets.attacks` subclass it.
:func:`load_protector` picks the class from ``protector_type`` in ``config.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import load_file, save, save_file

from .. import __version__
from .clustering import apply_feature_transform, assign
from .config import UCConfig
from .data import load_native, working_tensor
from ..imaging import DEFAULT_MAX_PIXELS, ImageDecodeError, apply_delta, content_key
from .patterns import PERIODIC, tile_to
from .surrogates import Surrogate, load_surrogate

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "protector.safetensors"
PROTECTOR_TYPE = "unlearnable-clusters"
_IMPORT_PID = os.getpid()
#: What a protector does with an image whose bytes cannot be decoded (``protector.on_bad_image``).
ON_BAD_IMAGE = ("raise", "skip", "keep")
#: Errors PIL (inside ``datasets``' decoding) raises for corrupt or truncated image bytes.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError)


class SurrogateMismatchError(RuntimeError):
    """The surrogate loaded at map time is not the one the protector was fitted with."""


class InvalidProtectorError(ValueError):
    """A saved protector directory is damaged or not a protector; the message names the file."""


class _Entries(dict):
    """A dict of a saved protector's file whose missing keys raise :class:`InvalidProtectorError`."""

    def __init__(self, data: dict, file: Path):
        super().__init__(data)
        self.file = file

    def __missing__(self, key: str):
        raise InvalidProtectorError(f"this is not a valid protector directory: {self.file}: missing entry {key!r}")


def _map_flags() -> tuple[bool, bool] | None:
    """``(with_indices, with_rank)`` of the ``Dataset.map`` calling us, read from its frame (None if not found).

    Needed only for an unbatched map with one extra argument, where an index and a rank are
    both a plain ``int``.
    """
    frame = sys._getframe(2)
    for _ in range(12):
        if frame is None:
            return None
        if frame.f_code.co_name == "_map_single" and "with_rank" in frame.f_locals:
            return bool(frame.f_locals.get("with_indices")), bool(frame.f_locals.get("with_rank"))
        frame = frame.f_back
    return None


def device_for_rank(rank: int | None) -> str | None:
    """The device a ``ds.map(..., with_rank=True, num_proc=n)`` worker of ``rank`` uses:
    ``cuda:{rank % device_count}``, or None (stay where it is) without CUDA or without a rank.

    Example:
        >>> device_for_rank(None) is None
        True
    """
    if rank is None or not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return None
    return f"cuda:{int(rank) % torch.cuda.device_count()}"


#: protector_type (config.json) -> class; filled by :func:`register_protector_type`.
PROTECTOR_TYPES: dict[str, type[BaseProtector]] = {}


def register_protector_type(cls: type[BaseProtector]) -> type[BaseProtector]:
    """Class decorator: make ``load_protector`` (and unpickling) build ``cls`` for its ``protector_type``."""
    PROTECTOR_TYPES[cls.protector_type] = cls
    return cls


def protector_class(protector_type: str | None) -> type[BaseProtector]:
    """The protector class saved under ``protector_type``; raises ``ValueError`` for unknown types."""
    if protector_type not in PROTECTOR_TYPES:
        import importlib

        importlib.import_module(f"{__package__}.attacks")  # registers the baseline protector types
    if protector_type not in PROTECTOR_TYPES:
        raise ValueError(f"unknown protector_type {protector_type!r} in {CONFIG_NAME}; known: "
                         f"{sorted(PROTECTOR_TYPES)}. Was it saved by a newer uc-datasets?")
    return PROTECTOR_TYPES[protector_type]


class BaseProtector:
    """What every fitted protector shares: the ``datasets.map`` callable, save/load, fingerprint, Hub push.

    A subclass sets ``protector_type`` and implements :meth:`perturbations_for` (one
    perturbation ``(3, h, w)`` per image), :meth:`_config_dict`, :meth:`_tensors`,
    :meth:`_from_parts` and :attr:`method`; it must have ``config`` (with ``epsilon``),
    ``image_column``, ``working_hw``, ``metadata``, ``max_pixels`` and ``version``.
    ``label_column`` names a column the map callable also needs (None: images only).
    """

    protector_type: ClassVar[str] = ""
    label_column: str | None = None

    #: ``"raise"`` (default): an undecodable image stops the map with its row and a fix;
    #: ``"skip"``: its row is dropped (batched maps); ``"keep"``: the row is kept unchanged and
    #: :func:`uc_datasets.verify` lists it under ``undecodable``.
    on_bad_image: str = "raise"
    #: Where the surrogate runs; set per worker by ``ds.map(..., with_rank=True)`` (see :func:`device_for_rank`).
    device: str | None = None

    # ------------------------------------------------------------------ map interface
    def __call__(self, examples: dict, *extra: object) -> dict:
        """Protect a batch (``batched=True``) or a single example of a ``datasets.map``.

        Accepts ``with_indices=True`` (rows are then named by their dataset index in errors)
        and ``with_rank=True`` (each worker of a ``num_proc`` map puts its surrogate on
        ``cuda:{rank % device_count}``).

        Example:
            >>> protected = ds.map(uc_protect, batched=True, with_rank=True, num_proc=2)  # doctest: +SKIP
        """
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {self.on_bad_image!r}.")
        if self.image_column not in examples:
            raise KeyError(
                f"column {self.image_column!r} not in the mapped examples {list(examples)}; set "
                f"protector.image_column to the image column."
            )
        try:
            col = examples[self.image_column]
        except _DECODE_ERRORS:  # a decoded Image() column: datasets failed on a corrupt image
            if not hasattr(examples, "pa_table"):
                raise
            raw = examples.pa_table.column(self.image_column).to_pylist()  # the stored {bytes, path}: decode here
            col = raw if type(examples).__name__ == "LazyBatch" else raw[0]
        batched = isinstance(col, list)
        indices, rank = self._extra_args(extra, batched)
        device = device_for_rank(rank)
        if device is not None and device != self.device:
            self.to(device)
        values = col if batched else [col]
        if any(isinstance(v, str) for v in values):
            raise TypeError(
                f"column {self.image_column!r} holds strings (file paths?), not images, so the output would not be an "
                f"image column. Cast it first: ds = ds.cast_column({self.image_column!r}, datasets.Image())"
            )
        if not batched and self.on_bad_image == "skip":
            raise ValueError("on_bad_image='skip' drops rows, which only a batched map can do: "
                             "ds.map(protector, batched=True).")
        rows = indices if isinstance(indices, list) else [indices] if indices is not None else None
        labels = None
        if self.label_column is not None:
            if self.label_column not in examples:
                raise KeyError(
                    f"this {self.method} protector is label-consistent: it needs the label column "
                    f"{self.label_column!r} in the mapped examples, which have {list(examples)}. Do not remove "
                    f"it before ds.map(protector), or set protector.label_column to the label column."
                )
            labels = examples[self.label_column] if batched else [examples[self.label_column]]
        out, bad = self._protect_tolerant(values, labels=labels, rows=rows)
        if not batched:
            return {self.image_column: out[0]}
        if bad and self.on_bad_image == "skip":
            keep = [j for j in range(len(values)) if j not in bad]
            result = {k: [examples[k][j] for j in keep] for k in examples if k != self.image_column}
            return {**result, self.image_column: [out[j] for j in keep]}
        return {self.image_column: out}

    @staticmethod
    def _extra_args(extra: tuple, batched: bool | None) -> tuple[object, int | None]:
        """``(indices, rank)`` from the extra arguments of ``with_indices`` / ``with_rank``."""
        if not extra:
            return None, None
        if len(extra) == 2:
            return extra[0], extra[1]
        if len(extra) > 2:
            raise TypeError(f"a protector takes the examples plus at most indices and rank, got {len(extra) + 1} "
                            "arguments")
        (x,) = extra
        if isinstance(x, list):  # batched indices
            return x, None
        if x is None:  # the rank of a single-process map
            return None, None
        flags = _map_flags() if batched is not True else (False, True)
        return (None, x) if flags == (False, True) else (x, None)

    def _protect_tolerant(self, values: list, *, labels: Sequence[object] | None,
                          rows: Sequence[int] | None) -> tuple[list, set[int]]:
        """Protect ``values``; undecodable ones follow ``on_bad_image``. Returns (outputs, bad positions)."""
        try:
            return self.protect_images(values, labels=labels, indices=rows, start=None), set()
        except ImageDecodeError:
            if self.on_bad_image == "raise":
                raise
        bad: set[int] = set()
        for j, v in enumerate(values):
            try:
                load_native(v, index=j, image_column=self.image_column, max_pixels=self.max_pixels)
            except ImageDecodeError:
                bad.add(j)
        good = [j for j in range(len(values)) if j not in bad]
        done = self.protect_images([values[j] for j in good], labels=None if labels is None else
                                   [labels[j] for j in good], indices=None if rows is None else [rows[j] for j in good],
                                   start=None)
        out: list = list(values)
        for j, img in zip(good, done):
            out[j] = img
        where = ", ".join(str(rows[j] if rows is not None else f"#{j} of this batch") for j in sorted(bad))
        logger.warning("%d image(s) could not be decoded (rows %s): %s (on_bad_image=%r)", len(bad), where,
                       "dropped" if self.on_bad_image == "skip" else "kept unchanged", self.on_bad_image)
        return out, bad

    def protect_images(self, images: Sequence[object], *, start: int | None = 0,
                       labels: Sequence[object] | None = None,
                       indices: Sequence[int] | None = None) -> list[Image.Image]:
        """Protect a list of images (PIL, bytes dicts or paths); returns new PNG-bound images.

        ``labels`` (one per image) is needed only by protectors with a ``label_column``;
        ``indices`` (or ``start``, the row of the first image; None: unknown) name rows in errors.

        Example:
            >>> [out] = uc_protect.protect_images([Image.open("cat.png")])  # doctest: +SKIP
        """
        rows = list(indices) if indices is not None else None
        natives = []
        for i, v in enumerate(images):
            row = rows[i] if rows is not None else None if start is None else start + i
            where = (f"row {row} of column {self.image_column!r}" if row is not None else
                     f"image {i} of this map batch of column {self.image_column!r} (ds.map(protector, ..., "
                     "with_indices=True) names its row)")
            try:
                natives.append(load_native(v, index=i, where=where, image_column=self.image_column,
                                           max_pixels=self.max_pixels))
            except ImageDecodeError as err:
                drop = (f"ds = ds.filter(lambda r, i: i != {row}, with_indices=True)" if row is not None else
                        "ds.filter(...)")
                raise ImageDecodeError(
                    f"{where}: the image bytes could not be decoded ({err.__cause__ or err}). Nothing was written. "
                    f"Remove the row ({drop}), or set protector.on_bad_image = 'skip' (drop such rows, batched maps) "
                    "or 'keep' (keep them unchanged; verify lists them). To look at the bytes, cast the column "
                    f"with ds.cast_column({self.image_column!r}, datasets.Image(decode=False))."
                ) from err
        deltas = self.perturbations_for(natives, labels=labels)
        eps = self.config.epsilon
        return [apply_delta(img, d, eps) for img, d in zip(natives, deltas)]

    def to(self, device: str | torch.device) -> BaseProtector:
        """Run the surrogate on ``device`` from now on (now if loaded, else on first use); returns self."""
        self.device = str(device)
        if getattr(self, "_surrogate", None) is not None:
            self._surrogate.to(self.device)
        return self

    def perturbations_for(self, images: Sequence[Image.Image], *,
                          labels: Sequence[object] | None = None) -> list[torch.Tensor]:
        """The perturbation ``(3, h, w)`` at the working resolution of each supported-mode image."""
        raise NotImplementedError

    @property
    def method(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence
    def _config_dict(self) -> dict:
        raise NotImplementedError

    def _tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def _from_parts(cls, cfg: dict, tensors: dict[str, torch.Tensor], *,
                    surrogate: Surrogate | None = None) -> BaseProtector:
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``protector.safetensors``. Keep the directory private."""
        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / CONFIG_NAME).write_text(json.dumps(self._config_dict(), indent=2, sort_keys=True))
        save_file(self._tensors(), str(d / WEIGHTS_NAME), metadata={"format": "pt"})
        logger.info("Saved protector to %s (a secret: do not publish it)", d)
        return d

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, surrogate: Surrogate | None = None) -> BaseProtector:
        """Load a protector saved with :meth:`save_pretrained` (safetensors + JSON only).

        A damaged directory raises :class:`InvalidProtectorError` naming the file and what is wrong.
        """
        d = Path(path)
        if not (d / CONFIG_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"{d} is not a saved protector: expected {CONFIG_NAME} and {WEIGHTS_NAME} in it."
            )
        bad = "this is not a valid protector directory"
        try:
            cfg = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidProtectorError(f"{bad}: {d / CONFIG_NAME}: not valid JSON ({err})") from None
        if not isinstance(cfg, dict) or not isinstance(cfg.get("config", {}), dict):
            raise InvalidProtectorError(f"{bad}: {d / CONFIG_NAME}: expected a JSON object with a 'config' object")
        try:
            tensors = load_file(str(d / WEIGHTS_NAME))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise InvalidProtectorError(f"{bad}: {d / WEIGHTS_NAME}: cannot be read ({err}); is it truncated? "
                                        "Copy it again from where it was saved.") from None
        try:
            target = protector_class(cfg.get("protector_type")) if cls is BaseProtector else cls
            return target._from_parts(_Entries(cfg, d / CONFIG_NAME), _Entries(tensors, d / WEIGHTS_NAME),
                                      surrogate=surrogate)
        except InvalidProtectorError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise InvalidProtectorError(f"{bad}: {d}: {err}") from None

    # ------------------------------------------------------------------ pickling / fingerprint
    def _pickle_state(self) -> dict:
        """Runtime settings that travel with a pickle but are not saved (e.g. ``max_pixels``)."""
        return {"max_pixels": self.max_pixels, "on_bad_image": self.on_bad_image}

    def _set_pickle_state(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def __reduce__(self):
        # datasets fingerprints map functions by pickling them. Pickle only what defines the
        # output (config, perturbations, centres, cache, surrogate digest, package version),
        # as deterministic bytes: never the surrogate's weights, nor the metadata (timings,
        # loss curves), which differ between two identical fits. Worker processes (num_proc)
        # rebuild the protector from the same bytes and reload the surrogate.
        cfg = {k: v for k, v in self._config_dict().items() if k != "metadata"}
        return (_restore_protector, (json.dumps(cfg, sort_keys=True), save(self._tensors()), self._pickle_state()))

    def __deepcopy__(self, memo: dict) -> BaseProtector:
        fn, args = self.__reduce__()
        new = fn(*args)
        new.metadata = copy.deepcopy(self.metadata, memo)
        return new

    def __copy__(self) -> BaseProtector:
        return self.__deepcopy__({})

    def push_to_hub(self, repo_id: str, *, private: bool = True, allow_public: bool = False, token: str | None = None,
                    revision: str | None = None, commit_message: str | None = None) -> str:
        """Push to a **private** Hub model repo (a public push needs ``allow_public=True``); returns the commit URL.

        Example:
            >>> uc_protect.push_to_hub("me/pets-protector")  # doctest: +SKIP
            >>> uc_protect = load_protector("me/pets-protector")  # doctest: +SKIP
        """
        from ..hub import push_protector

        return push_protector(self, repo_id, private=private, allow_public=allow_public, token=token,
                              revision=revision, commit_message=commit_message)


@register_protector_type
class UCProtector(BaseProtector):
    """A fitted Unlearnable Clusters protector; ``ds.map(protector, batched=True)`` protects.

    Each image is assigned to the nearest cluster centre of its surrogate embedding (or
    looked up in the fit-set cache, which gives the same answer without the surrogate),
    and that cluster's perturbation is resized to the image and added losslessly. Output
    images keep their size and mode and are stored as PNG.

    Example:
        >>> protected = ds.map(uc_protect, batched=True)  # doctest: +SKIP
        >>> uc_protect.save_pretrained("protector/")  # a secret: never publish it  # doctest: +SKIP
    """

    protector_type: ClassVar[str] = PROTECTOR_TYPE

    def __init__(self, config: UCConfig, deltas: torch.Tensor, centres: np.ndarray, permutation: np.ndarray,
                 *, surrogate_info: dict, image_column: str = "image", working_hw: Sequence[int] = (224, 224),
                 cache_keys: np.ndarray | None = None, cache_clusters: np.ndarray | None = None,
                 metadata: dict | None = None, surrogate: Surrogate | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, use_cache: bool = True,
                 classes: Sequence[object] | None = None, cluster_class: np.ndarray | None = None,
                 transform: dict[str, np.ndarray] | None = None):
        self.config = config
        self.label_column = config.label_column
        self.classes = list(classes) if classes is not None else None
        self.cluster_class = None if cluster_class is None else np.asarray(cluster_class, dtype=np.int64)
        self.transform = {k: np.asarray(v, np.float32) for k, v in (transform or {}).items()}
        self.deltas = deltas.detach().float().cpu().contiguous()
        self.centres = np.ascontiguousarray(centres, dtype=np.float32)
        self.permutation = np.asarray(permutation, dtype=np.int64)
        self.surrogate_info = dict(surrogate_info)
        self.image_column = image_column
        self.working_hw = tuple(int(v) for v in working_hw)
        keys = np.zeros((0, 16), np.uint8) if cache_keys is None else np.asarray(cache_keys, np.uint8)
        clusters = np.zeros(0, np.int64) if cache_clusters is None else np.asarray(cache_clusters, np.int64)
        self.cache_keys, self.cache_clusters = keys, clusters
        self._cache = {bytes(k): int(c) for k, c in zip(keys, clusters)}
        self.metadata = dict(metadata or {})
        self.max_pixels = max_pixels
        self.use_cache = use_cache
        self._surrogate = surrogate
        self.version = __version__
        self._check()

    def _check(self) -> None:
        p = self.config.n_clusters
        if self.deltas.shape[0] != p or self.centres.shape[0] != p or self.permutation.shape != (p,):
            raise ValueError("inconsistent protector: deltas, centres and permutation must have n_clusters rows")
        if sorted(self.permutation.tolist()) != list(range(p)):
            raise ValueError(f"inconsistent protector: the target permutation is not a permutation of 0..{p - 1}")
        if not bool(torch.isfinite(self.deltas).all()) or not np.isfinite(self.centres).all():
            raise ValueError("inconsistent protector: the perturbations or centres hold NaN or infinite values, so "
                             "some pixels would be left unprotected; refit the protector")
        keys = self.cache_keys
        if keys.ndim != 2 or keys.shape[1] != 16 or len(keys) != len(self.cache_clusters):
            raise ValueError("inconsistent protector: cache_keys must be (n, 16) with one cached cluster per key")
        if len(self.cache_clusters) and (self.cache_clusters.min() < 0 or self.cache_clusters.max() >= p):
            raise ValueError(f"inconsistent protector: a cached cluster id is out of range (must be in 0..{p - 1}, "
                             f"found {int(self.cache_clusters.min())}..{int(self.cache_clusters.max())})")
        if self.config.label_aware:
            if self.classes is None or self.cluster_class is None or self.cluster_class.shape != (p,):
                raise ValueError("inconsistent protector: a label-aware protector needs its classes and the class "
                                 "of every cluster")
            if self.cluster_class.min() < 0 or self.cluster_class.max() >= len(self.classes):
                raise ValueError("inconsistent protector: a cluster's class is out of range")
            self._class_index = {c: i for i, c in enumerate(self.classes)}
        if float(self.deltas.abs().max()) > self.config.epsilon + 1e-6:
            raise ValueError("inconsistent protector: a perturbation exceeds epsilon")

    # ------------------------------------------------------------------ map interface
    def perturbations_for(self, images: Sequence[Image.Image], *,
                          labels: Sequence[object] | None = None) -> list[torch.Tensor]:
        """The perturbation of each image's cluster; periodic families are tiled to the image's
        own size (no resampling). ``labels`` are used in label-aware mode only."""
        clusters = self.assign(images, labels=labels)
        if self.config.pattern not in PERIODIC:
            return [self.deltas[c] for c in clusters]
        k = min(self.config.period, *self.working_hw)
        return [tile_to(self.deltas[c][:, :k, :k], (img.height, img.width)) for c, img in zip(clusters, images)]

    def _label_indices(self, labels: Sequence[object] | None, n: int) -> np.ndarray:
        if labels is None or len(labels) != n:
            raise ValueError(f"this label-aware protector needs the label column {self.label_column!r}, one label "
                             "per image.")
        values = [int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v for v in labels]
        idx = np.array([self._class_index.get(v, -1) for v in values], dtype=np.int64)
        if (idx < 0).any():
            bad = sorted({repr(values[i]) for i in np.flatnonzero(idx < 0)})[:10]
            raise ValueError(f"label(s) {', '.join(bad)} of column {self.label_column!r} were not among the "
                             f"{len(self.classes)} classes this protector was fitted on; refit with those classes.")
        return idx

    def assign(self, images: Sequence[Image.Image], *, labels: Sequence[object] | None = None) -> np.ndarray:
        """Cluster of each supported-mode image: the fit-set cache, else the nearest centre.

        Label-aware: only the clusters of the image's class are candidates (one cluster per
        class needs no surrogate at all); a cached cluster of another class is not used.
        """
        out = np.full(len(images), -1, dtype=np.int64)
        cls = self._label_indices(labels, len(images)) if self.config.label_aware else None
        if self.use_cache and self._cache:
            for i, img in enumerate(images):
                out[i] = self._cache.get(content_key(img), -1)
            if cls is not None:
                out[(out >= 0) & (self.cluster_class[np.maximum(out, 0)] != cls)] = -1
        if cls is not None:
            counts = np.bincount(self.cluster_class, minlength=len(self.classes))
            single = (out < 0) & (counts[cls] == 1)
            out[single] = np.searchsorted(self.cluster_class, cls[single])  # clusters are ordered by class
        todo = np.flatnonzero(out < 0)
        if len(todo):
            feats = apply_feature_transform(self.features([images[i] for i in todo]), self.transform)
            if cls is None:
                out[todo] = assign(feats, self.centres)
            else:
                for j, i in enumerate(todo):
                    cand = np.flatnonzero(self.cluster_class == cls[i])
                    out[i] = cand[int(assign(feats[j : j + 1], self.centres[cand])[0])]
        return out

    @torch.no_grad()
    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Surrogate embeddings of supported-mode images, exactly as computed during fit."""
        sur = self.surrogate
        device = next(sur.parameters()).device
        bs = self.config.feature_batch_size
        out = []
        for s in range(0, len(images), bs):
            x = torch.stack([working_tensor(img, self.working_hw) for img in images[s : s + bs]])
            out.append(sur(x.to(device).float().div_(255)).cpu())
        return torch.cat(out).numpy()

    @property
    def surrogate(self) -> Surrogate:
        """The frozen surrogate, loaded on first use and checked against the fitted weights."""
        if self._surrogate is None:
            info = self.surrogate_info
            sur = load_surrogate(info["name"], image_size=self.config.surrogate_image_size)
            if info.get("weights_sha256") and sur.weights_sha256 != info["weights_sha256"]:
                raise SurrogateMismatchError(
                    f"The surrogate {info['name']!r} loaded now has different weights from the one this "
                    "protector was fitted with, so cluster assignment would be wrong. Load the same "
                    "revision/path, or pass it explicitly: load_protector(path, surrogate=...)."
                )
            self._surrogate = sur if self.device is None else sur.to(self.device)
        return self._surrogate

    # ------------------------------------------------------------------ persistence
    def _config_dict(self) -> dict:
        return {
            "protector_type": PROTECTOR_TYPE,
            "uc_datasets_version": self.version,
            "method": self.method,
            "config": self.config.to_dict(),
            "image_column": self.image_column,
            "working_hw": list(self.working_hw),
            "permutation": self.permutation.tolist(),
            "surrogate": self.surrogate_info,
            "metadata": self.metadata,
            "mode": "label-aware" if self.config.label_aware else "label-free",
            "classes": self.classes,
        }

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "deltas": self.deltas,
            "centres": torch.from_numpy(self.centres),
            "cache_keys": torch.from_numpy(np.array(self.cache_keys, dtype=np.uint8, copy=True)),
            "cache_clusters": torch.from_numpy(np.ascontiguousarray(self.cache_clusters)),
        }
        if self.cluster_class is not None:
            out["cluster_class"] = torch.from_numpy(np.ascontiguousarray(self.cluster_class))
        out.update({f"transform_{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.transform.items()})
        return out

    @property
    def method(self) -> str:
        """``UC-CLIP`` for a CLIP surrogate, ``UC`` otherwise (the paper's names); `` (label-aware)``
        is added when the keys are nested in the publisher's classes."""
        name = "UC-CLIP" if self.surrogate_info.get("kind") == "clip" else "UC"
        return name + " (label-aware)" if self.config.label_aware else name

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, surrogate: Surrogate | None = None) -> UCProtector:
        """Load a protector saved with :meth:`save_pretrained` (safetensors + JSON only)."""
        return super().from_pretrained(path, surrogate=surrogate)

    @classmethod
    def _from_parts(cls, cfg: dict, tensors: dict[str, torch.Tensor], *,
                    surrogate: Surrogate | None = None) -> UCProtector:
        if cfg.get("protector_type") != PROTECTOR_TYPE:
            raise ValueError(f"not an Unlearnable Clusters protector: protector_type={cfg.get('protector_type')!r}")
        saved_version = cfg.get("uc_datasets_version")
        if saved_version != __version__:
            logger.warning("protector saved by uc-datasets %s, loaded by %s", saved_version, __version__)
        return cls(
            UCConfig.from_dict(cfg["config"]),
            tensors["deltas"],
            tensors["centres"].numpy(),
            np.asarray(cfg["permutation"]),
            surrogate_info=cfg["surrogate"],
            image_column=cfg.get("image_column", "image"),
            working_hw=cfg["working_hw"],
            cache_keys=tensors["cache_keys"].numpy(),
            cache_clusters=tensors["cache_clusters"].numpy(),
            metadata=cfg.get("metadata", {}),
            surrogate=surrogate,
            classes=cfg.get("classes"),
            cluster_class=tensors["cluster_class"].numpy() if "cluster_class" in tensors else None,
            transform={k[len("transform_"):]: v.numpy() for k, v in tensors.items() if k.startswith("transform_")},
        )

    # ------------------------------------------------------------------ pickling / fingerprint
    def _pickle_state(self) -> dict:
        return {**super()._pickle_state(), "use_cache": self.use_cache}

    def __repr__(self) -> str:
        c = self.config
        return (f"UCProtector(method={self.method}, surrogate={self.surrogate_info.get('name')!r}, "
                f"n_clusters={c.n_clusters}, epsilon={c.epsilon_levels}/255, working_hw={self.working_hw})")


def _restore_protector(cfg_json: str, tensor_bytes: bytes, state: dict) -> BaseProtector:
    if os.getpid() != _IMPORT_PID and torch.get_num_threads() > 1:
        # A forked worker (``ds.map(..., num_proc=n)``): torch's OpenMP pool inherited from
        # the parent is not fork-safe and hangs at the first parallel op. One thread per
        # worker is also what num_proc parallelism wants.
        torch.set_num_threads(1)
    cfg = json.loads(cfg_json)
    prot = protector_class(cfg.get("protector_type"))._from_parts(cfg, st_load(tensor_bytes))
    prot._set_pickle_state(state)
    return prot


def load_protector(path: str | os.PathLike, *, surrogate: Surrogate | None = None, token: str | None = None,
                   revision: str | None = None) -> BaseProtector:
    """Load a protector from a directory written by ``save_pretrained``, or from a Hub model repo.

    A ``path`` that is not an existing directory is taken as a Hub model repo id (pushed by
    :meth:`UCProtector.push_to_hub`; ``token`` reads private repos). The class (UC or one
    of the :mod:`uc_datasets.attacks` baselines) follows ``protector_type`` in ``config.json``;
    ``surrogate`` passes an already loaded surrogate (UC) or label classifier (baselines).

    Example:
        >>> uc_protect = load_protector("protector/")  # doctest: +SKIP
        >>> uc_protect = load_protector("me/pets-protector")  # doctest: +SKIP
    """
    if not Path(path).is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError

        try:
            path = snapshot_download(str(path), repo_type="model", revision=revision, token=token,
                                     allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
        except (HfHubHTTPError, HFValidationError, EntryNotFoundError) as e:
            raise FileNotFoundError(
                f"{str(path)!r} is neither a local protector directory nor a Hub model repo you can read "
                f"({type(e).__name__}). Check the path, or the repo id and that your token can read the private repo."
            ) from e
    return BaseProtector.from_pretrained(path, surrogate=surrogate)
