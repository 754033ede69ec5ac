"""What every protector shares: its state, the ``datasets.map`` callable and the surrogate.

A protector is a **secret**: whoever holds it can subtract the perturbations. Save it with
:meth:`BaseProtector.save_pretrained`, never publish it.

:class:`BaseProtector` owns the state every protector has (config, perturbations, surrogate
identity, working resolution, the content-key cache, metadata), the ``datasets.map`` callable,
the label lookup and the lazy, hash-checked load of its surrogate, and the Hub API of
``huggingface_hub.ModelHubMixin`` (``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``).
The jobs it uses sit below it and never import it: :mod:`~uc_datasets.core.persistence` (the
directory format, its checked reading, the pickle rebuild), :mod:`~uc_datasets.core.protector_hub`
(private model repos) and :mod:`~uc_datasets.core.map_context` (what the calling ``Dataset.map``
was asked for). A
subclass (:class:`~uc_datasets.methods.uc.protector.UCProtector`, the baselines of
:mod:`uc_datasets.methods`) keeps only its own tensors and
:meth:`~BaseProtector.perturbations_for`. :func:`uc_datasets.registry.load_protector` picks
the class from ``protector_type``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save

from uc_datasets._version import __version__
from uc_datasets.core.config import BaseConfig
from uc_datasets.core.imaging import DEFAULT_MAX_PIXELS, ImageDecodeError, apply_delta, load_native
from uc_datasets.core.map_context import map_call_locals, map_flags, mapped_features, stored_column
from uc_datasets.core.persistence import (
    _restore_protector,
    invalid_protector_errors,
    read_protector_dir,
    write_protector_dir,
)
from uc_datasets.core.protector_hub import push_protector, resolve_protector_path

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

    from uc_datasets.core.surrogates import Surrogate

logger = logging.getLogger(__name__)

#: What a protector does with an image whose bytes cannot be decoded (``protector.on_bad_image``).
ON_BAD_IMAGE = ("raise", "skip", "keep")
#: Errors PIL (inside ``datasets``' decoding) raises for corrupt or truncated image bytes.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError)


class SurrogateMismatchError(RuntimeError):
    """The surrogate loaded at map time is not the one the protector was fitted with."""


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


def default_device() -> torch.device:
    """CUDA when available, else CPU (where a fit runs when no device is given)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class BaseProtector:
    """What every fitted protector shares: its state, the ``datasets.map`` callable, save/load,
    fingerprint, the surrogate and the Hub push.

    A subclass sets ``protector_type``, ``config_class`` (a :class:`~uc_datasets.core.config.BaseConfig`)
    and ``cache_name`` (the name of the cached value per content key), implements
    :meth:`perturbations_for` (one perturbation ``(3, h, w)`` per image), :attr:`method` and
    :meth:`_load_surrogate`, and adds its own tensors and settings with :meth:`_extra_tensors`,
    :meth:`_extra_config` and :meth:`_parts_kwargs`.
    ``label_column`` names a column the map callable also needs (None: images only).
    """

    protector_type: ClassVar[str] = ""
    config_class: ClassVar[type[BaseConfig]] = BaseConfig
    #: Name of the per-key cached value in the safetensors file (``cache_clusters``, ``cache_rows``).
    cache_name: ClassVar[str] = "cache_values"
    #: What the surrogate is called in errors, and what a wrong one would spoil.
    surrogate_role: ClassVar[str] = "surrogate"
    surrogate_use: ClassVar[str] = "cluster assignment"
    label_column: str | None = None

    #: ``"raise"`` (default): an undecodable image stops the map with its row and a fix;
    #: ``"skip"``: its row is dropped (batched maps); ``"keep"``: the row is kept unchanged and
    #: :func:`uc_datasets.core.verify` lists it under ``undecodable``.
    on_bad_image: str = "raise"
    #: Where the surrogate runs; set per worker by ``ds.map(..., with_rank=True)`` (see :func:`device_for_rank`).
    device: str | None = None
    #: A label-aware protector fitted on a ``ClassLabel`` refuses a dataset whose ``ClassLabel`` names the
    #: same integers differently; True matches labels by integer anyway.
    allow_other_class_names: bool = False

    def __init__(self, config: BaseConfig, deltas: torch.Tensor, *, surrogate_info: dict,
                 image_column: str = "image", working_hw: Sequence[int] = (224, 224),
                 cache_keys: np.ndarray | None = None, cache_values: np.ndarray | None = None,
                 metadata: dict | None = None, surrogate: Any = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 use_cache: bool = True, classes: Sequence[object] | None = None):
        self.config = config
        self.deltas = deltas.detach().float().cpu().contiguous()
        self.surrogate_info = dict(surrogate_info)
        self.image_column = image_column
        self.working_hw = tuple(int(v) for v in working_hw)
        keys = np.zeros((0, 16), np.uint8) if cache_keys is None else np.asarray(cache_keys, np.uint8)
        values = np.zeros(0, np.int64) if cache_values is None else np.asarray(cache_values, np.int64)
        self.cache_keys, self.cache_values = keys, values
        self._cache = {bytes(k): int(v) for k, v in zip(keys, values)}
        self.classes = list(classes) if classes is not None else None
        self._class_index = {c: i for i, c in enumerate(self.classes or [])}
        self.metadata = dict(metadata or {})
        self.max_pixels = max_pixels
        self.use_cache = use_cache
        self._surrogate = surrogate
        self.version = __version__
        self._check_shared()
        self._check()

    def _check_shared(self) -> None:
        """The checks every protector passes (finite perturbations within epsilon, a well-formed cache)."""
        keys = self.cache_keys
        if keys.ndim != 2 or keys.shape[1] != 16 or len(keys) != len(self.cache_values):
            raise ValueError(f"inconsistent protector: cache_keys must be (n, 16) with one {self.cache_name} value "
                             "per key")
        self._check_perturbations()

    def _check_perturbations(self) -> None:
        """Finite perturbations within epsilon (SynPer, which stores class centres, checks less)."""
        if not bool(torch.isfinite(self.deltas).all()):
            raise ValueError("inconsistent protector: the perturbations hold NaN or infinite values, so some pixels "
                             "would be left unprotected; refit the protector")
        if self.deltas.numel() and float(self.deltas.abs().max()) > self.config.epsilon + 1e-6:
            raise ValueError("inconsistent protector: a perturbation exceeds epsilon")

    def _check(self) -> None:
        """The subclass's own consistency checks (raise ``ValueError``)."""

    def _check_cache_range(self, n: int, what: str) -> None:
        v = self.cache_values
        if len(v) and (v.min() < 0 or v.max() >= n):
            raise ValueError(f"inconsistent protector: a cached {what} is out of range (must be in 0..{n - 1}, "
                             f"found {int(v.min())}..{int(v.max())})")

    def label_rows(self, labels: Sequence[object] | None, n: int) -> np.ndarray:
        """The position in ``classes`` of each of the ``n`` images' labels (from ``label_column``);
        a missing or unknown label raises ``ValueError`` naming it."""
        if labels is None or len(labels) != n:
            raise ValueError(f"this {self.method} protector needs the label column {self.label_column!r}, one label "
                             "per image.")
        values = [int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v for v in labels]
        idx = np.array([self._class_index.get(v, -1) for v in values], dtype=np.int64)
        if (idx < 0).any():
            unknown = sorted({str(values[i]) for i in np.flatnonzero(idx < 0)})[:10]
            raise ValueError(f"label(s) {unknown} of column {self.label_column!r} were not among the classes this "
                             f"{self.method} protector was fitted on: they are not among the {len(self.classes)} "
                             f"classes {self.classes[:10]} that have perturbations; refit with those classes.")
        return idx

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
        if not isinstance(examples, Mapping) or map_call_locals().get("input_columns"):
            examples, extra = self._from_input_columns(examples, extra)  # input_columns: the columns' values
        if self.image_column not in examples:
            raise KeyError(
                f"column {self.image_column!r} not in the mapped examples {list(examples)}; set "
                f"protector.image_column to the image column."
            )
        try:
            col = examples[self.image_column]
        except _DECODE_ERRORS:  # a decoded Image() column: datasets failed on a corrupt image
            col = stored_column(examples, self.image_column)  # the stored {bytes, path}: decode here
            if col is None:
                raise
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
            self.check_class_names(mapped_features(examples))
        out, bad = self._protect_tolerant(values, labels=labels, rows=rows)
        if not batched:
            return {self.image_column: out[0]}
        if bad and self.on_bad_image == "skip":
            keep = [j for j in range(len(values)) if j not in bad]
            result = {k: [examples[k][j] for j in keep] for k in examples if k != self.image_column}
            return {**result, self.image_column: [out[j] for j in keep]}
        return {self.image_column: out}

    def _from_input_columns(self, first: object, extra: tuple) -> tuple[dict, tuple]:
        """``({column: value}, the remaining extra arguments)`` of a map with ``input_columns``."""
        columns = map_call_locals().get("input_columns") or [self.image_column]
        columns = [columns] if isinstance(columns, str) else list(columns)
        needed = [c for c in (self.image_column, self.label_column) if c is not None]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise KeyError(f"ds.map(protector, input_columns={columns}) does not pass {missing}, which this "
                           f"{self.method} protector reads: use input_columns={needed}, or map without "
                           "input_columns: ds.map(protector, batched=True).")
        if self.on_bad_image == "skip":
            raise ValueError("on_bad_image='skip' drops whole rows, which a map with input_columns cannot do; map "
                             "without input_columns: ds.map(protector, batched=True).")
        values = (first, *extra)
        return dict(zip(columns, values[: len(columns)])), tuple(values[len(columns):])

    def check_class_names(self, features: Any) -> None:
        """Refuse a label column whose ``ClassLabel`` names differ from the ones the protector was fitted on
        (labels are matched by integer, so each image would get another class's key), unless
        :attr:`allow_other_class_names`."""
        fitted = self.metadata.get("label_names")
        feature = features.get(self.label_column) if features is not None else None
        if not fitted or self.allow_other_class_names or not hasattr(feature, "int2str"):
            return
        now = [feature.int2str(int(c)) if 0 <= int(c) < feature.num_classes else None for c in self.classes]
        diffs = [f"{c}: {a!r} -> {b!r}" for c, a, b in zip(self.classes, fitted, now) if a != b]
        if diffs:
            raise ValueError(
                f"the ClassLabel of column {self.label_column!r} names the classes differently from the one this "
                f"{self.method} protector was fitted on ({', '.join(diffs[:5])}{', ...' if len(diffs) > 5 else ''}):"
                " labels are matched by integer, so these images would get another class's key. Map the labels to "
                "the fitted names first (ds.align_labels_with_mapping), refit, or set "
                "protector.allow_other_class_names = True to match by integer anyway.")

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
        flags = map_flags() if batched is not True else (False, True)
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
                detail = err.__cause__ or str(err).removeprefix(f"{where}: ")  # the row is named once
                raise ImageDecodeError(
                    f"{where}: the image bytes could not be decoded ({detail}). Nothing was written. "
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
        """The method's card name (``UC``, ``EMinN``, ...); see :mod:`uc_datasets.core.record`."""
        raise NotImplementedError

    @property
    def label_aware(self) -> bool:
        """True when the perturbations are keyed to the publisher's labels (UC's label-aware mode)."""
        return False

    @property
    def n_perturbations(self) -> int:
        """The number of distinct perturbations (clusters, classes or fitted images), the record's ``n_clusters``."""
        return int(self.config.n_clusters)

    # ------------------------------------------------------------------ surrogate
    def _load_surrogate(self, name: str) -> Any:
        """Load the surrogate named ``name`` (the subclass knows which loader)."""
        raise NotImplementedError

    @property
    def surrogate(self) -> Surrogate:
        """The frozen surrogate, loaded on first use and checked against the fitted weights."""
        if self._surrogate is None:
            info = self.surrogate_info
            model = self._load_surrogate(info["name"])
            if info.get("weights_sha256") and model.weights_sha256 != info["weights_sha256"]:
                raise SurrogateMismatchError(
                    f"The {self.surrogate_role} {info['name']!r} loaded now has different weights from the one this "
                    f"protector was fitted with, so {self.surrogate_use} would be wrong. Load the same revision/path, "
                    "or pass it explicitly: load_protector(path, surrogate=...)."
                )
            self._surrogate = model if self.device is None else model.to(self.device)
        return self._surrogate

    # ------------------------------------------------------------------ persistence
    def _config_dict(self) -> dict:
        return {
            "protector_type": self.protector_type,
            "uc_datasets_version": self.version,
            "method": self.method,
            "config": self.config.to_dict(),
            "image_column": self.image_column,
            "working_hw": list(self.working_hw),
            "surrogate": self.surrogate_info,
            "metadata": self.metadata,
            **self._extra_config(),
        }

    def _extra_config(self) -> dict:
        """Entries of ``config.json`` only this class has."""
        return {}

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {
            "deltas": self.deltas,
            "cache_keys": torch.from_numpy(np.array(self.cache_keys, dtype=np.uint8, copy=True)),
            self.cache_name: torch.from_numpy(np.ascontiguousarray(self.cache_values, dtype=np.int64)),
            **self._extra_tensors(),
        }

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors of ``protector.safetensors`` only this class has."""
        return {}

    @classmethod
    def _parts_kwargs(cls, cfg: dict, tensors: dict[str, torch.Tensor]) -> dict:
        """Constructor keywords only this class has, read back from ``config.json`` and the tensors."""
        return {}

    @classmethod
    def _from_parts(cls, cfg: dict, tensors: dict[str, torch.Tensor], *,
                    surrogate: Any = None) -> BaseProtector:
        if cfg.get("protector_type") != cls.protector_type:
            raise ValueError(f"not {cls.description}: protector_type={cfg.get('protector_type')!r}")
        saved_version = cfg.get("uc_datasets_version")
        if saved_version != __version__:
            logger.warning("protector saved by uc-datasets %s, loaded by %s", saved_version, __version__)
        return cls(cls.config_class.from_dict(cfg["config"]), tensors["deltas"], surrogate_info=cfg["surrogate"],
                   image_column=cfg.get("image_column", "image"), working_hw=cfg["working_hw"],
                   cache_keys=tensors["cache_keys"].numpy(), **{cls.cache_name: tensors[cls.cache_name].numpy()},
                   metadata=cfg.get("metadata", {}), surrogate=surrogate, **cls._parts_kwargs(cfg, tensors))

    #: How errors name this class ("not an Unlearnable Clusters protector").
    description: ClassVar[str] = "a protector"

    def save_pretrained(self, save_directory: str | os.PathLike, *, push_to_hub: bool = False,
                        repo_id: str | None = None, **push_to_hub_kwargs: Any) -> CommitInfo | None:
        """Write ``config.json`` and ``protector.safetensors`` into ``save_directory``. Keep it private.

        As ``huggingface_hub.ModelHubMixin.save_pretrained``: ``push_to_hub=True`` then pushes to
        the private model repo ``repo_id`` (default: the directory's name) with
        :meth:`push_to_hub`, which takes the other keywords, and returns its ``CommitInfo``.

        Example:
            >>> uc_protect.save_pretrained("protector/")  # doctest: +SKIP
            >>> uc_protect.save_pretrained("protector/", push_to_hub=True, repo_id="me/pets-protector")  # doctest: +SKIP
        """
        d = write_protector_dir(save_directory, self._config_dict(), self._tensors())
        logger.info("Saved protector to %s (a secret: do not publish it)", d)
        if push_to_hub:
            return self.push_to_hub(repo_id or d.resolve().name, **push_to_hub_kwargs)
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, surrogate: Any = None,
                        revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                        force_download: bool = False, local_files_only: bool = False,
                        token: str | bool | None = None) -> BaseProtector:
        """Load a protector saved with :meth:`save_pretrained` (safetensors + JSON only), from a
        directory or a Hub model repo id.

        The Hub keywords are ``huggingface_hub.ModelHubMixin.from_pretrained``'s: ``revision``,
        ``cache_dir``, ``force_download``, ``local_files_only`` and ``token`` (private repos).
        A damaged directory raises :class:`~uc_datasets.core.persistence.InvalidProtectorError`
        naming the file and what is wrong. Call it on the class that was saved, or use
        :func:`uc_datasets.load_protector`, which picks it.

        Example:
            >>> UCProtector.from_pretrained("me/pets-protector", revision="v2")  # doctest: +SKIP
        """
        if cls is BaseProtector:
            raise TypeError("BaseProtector.from_pretrained needs a concrete class; use uc_datasets.load_protector("
                            "path), which picks the class from protector_type in config.json.")
        cfg, tensors, d = read_protector_dir(resolve_protector_path(
            pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir, force_download=force_download,
            local_files_only=local_files_only, token=token))
        with invalid_protector_errors(d):
            return cls._from_parts(cfg, tensors, surrogate=surrogate)

    # ------------------------------------------------------------------ pickling / fingerprint
    def _pickle_state(self) -> dict:
        """Runtime settings that travel with a pickle but are not saved (e.g. ``max_pixels``)."""
        return {"max_pixels": self.max_pixels, "on_bad_image": self.on_bad_image, "use_cache": self.use_cache}

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
        return (_restore_protector, (type(self), json.dumps(cfg, sort_keys=True), save(self._tensors()),
                                     self._pickle_state()))

    def __deepcopy__(self, memo: dict) -> BaseProtector:
        fn, args = self.__reduce__()
        new = fn(*args)
        new.metadata = copy.deepcopy(self.metadata, memo)
        return new

    def __copy__(self) -> BaseProtector:
        return self.__deepcopy__({})

    def push_to_hub(self, repo_id: str, *, private: bool = True, allow_public: bool = False,
                    token: str | None = None, branch: str | None = None, create_pr: bool = False,
                    commit_message: str | None = None) -> CommitInfo:
        """Push to a **private** Hub model repo in one commit; returns the ``huggingface_hub.CommitInfo``.

        The keywords follow ``huggingface_hub.ModelHubMixin.push_to_hub`` (``branch``, created if
        missing; ``create_pr``; ``commit_message``; ``token``), except that the repo is private
        unless ``private=False`` *and* ``allow_public=True`` (see
        :func:`~uc_datasets.core.protector_hub.push_protector`).

        Example:
            >>> commit = uc_protect.push_to_hub("me/pets-protector")  # doctest: +SKIP
            >>> uc_protect = load_protector("me/pets-protector", revision=commit.oid)  # doctest: +SKIP
        """
        return push_protector(self.save_pretrained, repo_id, method=self.method, private=private,
                              allow_public=allow_public, token=token, branch=branch, create_pr=create_pr,
                              commit_message=commit_message)
