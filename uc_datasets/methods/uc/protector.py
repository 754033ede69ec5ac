"""The fitted Unlearnable Clusters protector: perturbations, centres and config, callable by ``datasets.map``.

A protector is a **secret**: whoever holds it can subtract the perturbations. Save it
with :meth:`UCProtector.save_pretrained`, never publish it.

Files: ``config.json`` (settings, surrogate identity, permutation, loss curves, stats) and
``protector.safetensors`` (deltas, centres, the fit-set assignment cache and, with
``contrastive_share``, the sample-wise residual of every fit image in int8 levels). Loading
never unpickles. What every protector shares (the map callable, save/load, fingerprint,
surrogate loading, Hub push) is :class:`~uc_datasets.core.protector.BaseProtector`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from uc_datasets.core.imaging import DEFAULT_MAX_PIXELS, content_key, resize_delta, working_tensor
from uc_datasets.core.protector import BaseProtector
from uc_datasets.core.surrogates import Surrogate, load_surrogate
from uc_datasets.methods.uc.clustering import apply_feature_transform, assign
from uc_datasets.methods.uc.config import UCConfig

logger = logging.getLogger(__name__)

PROTECTOR_TYPE = "unlearnable-clusters"


def image_phase(delta: torch.Tensor, image: Image.Image) -> torch.Tensor:
    """``delta`` cyclically shifted by an offset drawn from the image's content hash (``phase="per-image"``).

    Every image of a key gets its own phase of the key's pattern, reproducibly (the same pixels
    give the same shift), so no single template per class is what the images share: a
    shift-invariant victim still reads the key, a linear class template does not.

    Example:
        >>> d = torch.arange(4.0).view(1, 1, 4)
        >>> sorted(image_phase(d, Image.new("L", (4, 1))).flatten().tolist())
        [0.0, 1.0, 2.0, 3.0]
    """
    return phase_shift(delta, content_key(image))


def phase_shift(delta: torch.Tensor, key: bytes) -> torch.Tensor:
    """``delta`` cyclically shifted by the offset that the content hash ``key`` names."""
    h, w = delta.shape[-2:]
    dy, dx = int.from_bytes(key[:4], "little") % h, int.from_bytes(key[4:8], "little") % w
    return delta.roll((dy, dx), dims=(-2, -1))


def uc_method_name(*, clip: bool, label_aware: bool) -> str:
    """The paper's name of a UC protector: ``UC-CLIP`` for a CLIP surrogate, else ``UC``; `` (label-aware)``
    added when the keys are nested in the publisher's classes. The one place UC's card names are made.

    Example:
        >>> uc_method_name(clip=True, label_aware=True)
        'UC-CLIP (label-aware)'
    """
    name = "UC-CLIP" if clip else "UC"
    return name + " (label-aware)" if label_aware else name


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
    config_class: ClassVar[type[UCConfig]] = UCConfig
    cache_name: ClassVar[str] = "cache_clusters"
    description: ClassVar[str] = "an Unlearnable Clusters protector"

    def __init__(self, config: UCConfig, deltas: torch.Tensor, centres: np.ndarray, permutation: np.ndarray,
                 *, surrogate_info: dict, image_column: str = "image", working_hw: Sequence[int] = (224, 224),
                 cache_keys: np.ndarray | None = None, cache_clusters: np.ndarray | None = None,
                 metadata: dict | None = None, surrogate: Surrogate | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, use_cache: bool = True,
                 classes: Sequence[object] | None = None, cluster_class: np.ndarray | None = None,
                 transform: dict[str, np.ndarray] | None = None, sample_residual: torch.Tensor | None = None):
        self.label_column = config.label_column
        self.sample_residual = None if sample_residual is None else torch.as_tensor(sample_residual)
        self._residual_rows: dict[bytes, int] | None = None
        self._warned_unseen = False
        self.cluster_class = None if cluster_class is None else np.asarray(cluster_class, dtype=np.int64)
        self.transform = {k: np.asarray(v, np.float32) for k, v in (transform or {}).items()}
        self.centres = np.ascontiguousarray(centres, dtype=np.float32)
        self.permutation = np.asarray(permutation, dtype=np.int64)
        super().__init__(config, deltas, surrogate_info=surrogate_info, image_column=image_column,
                         working_hw=working_hw, cache_keys=cache_keys, cache_values=cache_clusters,
                         metadata=metadata, surrogate=surrogate, max_pixels=max_pixels, use_cache=use_cache,
                         classes=classes)

    @property
    def family(self):
        """The :class:`~uc_datasets.methods.uc.families.base.Family` that made the perturbations (applies them at each size)."""
        if getattr(self, "_family", None) is None:
            self._family = self.config.family(self.config)
        return self._family

    @property
    def cache_clusters(self) -> np.ndarray:
        """The cluster of every fit-set image, by ``cache_keys`` (content hashes)."""
        return self.cache_values

    def _check(self) -> None:
        p = self.config.n_clusters
        if self.deltas.shape[0] != p or self.centres.shape[0] != p or self.permutation.shape != (p,):
            raise ValueError("inconsistent protector: deltas, centres and permutation must have n_clusters rows")
        if sorted(self.permutation.tolist()) != list(range(p)):
            raise ValueError(f"inconsistent protector: the target permutation is not a permutation of 0..{p - 1}")
        if not np.isfinite(self.centres).all():
            raise ValueError("inconsistent protector: the centres hold NaN or infinite values, so some pixels "
                             "would be left unprotected; refit the protector")
        self._check_cache_range(p, "cluster id")
        self._check_residual()
        if self.config.label_aware:
            if self.classes is None or self.cluster_class is None or self.cluster_class.shape != (p,):
                raise ValueError("inconsistent protector: a label-aware protector needs its classes and the class "
                                 "of every cluster")
            if self.cluster_class.min() < 0 or self.cluster_class.max() >= len(self.classes):
                raise ValueError("inconsistent protector: a cluster's class is out of range")

    def _check_residual(self) -> None:
        r, share = self.sample_residual, self.config.contrastive_share
        if r is None:
            if share:
                raise ValueError("inconsistent protector: contrastive_share is set but the sample-wise residual is "
                                 "missing; refit the protector")
            return
        if not share:
            raise ValueError("inconsistent protector: a sample-wise residual without contrastive_share")
        bound = round(self.config.budgets[1] * 255)
        if (r.dtype != torch.int8 or r.dim() != 4 or r.shape[0] != len(self.cache_keys) or r.shape[1] != 3
                or tuple(r.shape[-2:]) != tuple(self.working_hw)):
            raise ValueError(f"inconsistent protector: the sample-wise residual must be int8 (n_fit_images, 3, "
                             f"*working_hw) = ({len(self.cache_keys)}, 3, {tuple(self.working_hw)}), one row per "
                             f"cache key; got {r.dtype} {tuple(r.shape)}")
        if len(r) and int(r.abs().max()) > bound:
            raise ValueError(f"inconsistent protector: the sample-wise residual exceeds its {bound}/255 budget")

    def residuals_for(self, images: Sequence[Image.Image], *,
                      keys: Sequence[bytes] | None = None) -> list[torch.Tensor | None]:
        """The contrastive residual (3, h, w) of each fit-set image, found by its content hash
        (``keys``, computed when not given); None for an image the protector was not fitted on
        (it gets its class-wise part only)."""
        if self.sample_residual is None:
            return [None] * len(images)
        if self._residual_rows is None:
            self._residual_rows = {bytes(k): i for i, k in enumerate(self.cache_keys)}
        keys = [content_key(img) for img in images] if keys is None else keys
        rows = [self._residual_rows.get(k) for k in keys]
        unseen = sum(r is None for r in rows)
        if unseen and not self._warned_unseen:  # once per protector: an unbatched map calls this per row
            self._warned_unseen = True
            logger.warning("%d of %d image(s) are not in the fit set: they get the class-wise perturbation only, "
                           "without the sample-wise contrastive residual (said once per protector)", unseen, len(images))
        return [None if r is None else self.sample_residual[r].float() / 255 for r in rows]

    # ------------------------------------------------------------------ map interface
    def perturbations_for(self, images: Sequence[Image.Image], *,
                          labels: Sequence[object] | None = None) -> list[torch.Tensor]:
        """The perturbation of each image's cluster at the image's own size, by the family's rule
        (:meth:`~uc_datasets.methods.uc.families.base.Family.at_size`: periodic and drawn patterns
        are tiled, never resampled). ``labels`` are used in label-aware mode only."""
        needs_keys = (self.use_cache and bool(self._cache)) or self.config.phase == "per-image" or (
            self.sample_residual is not None)
        keys = [content_key(img) for img in images] if needs_keys else None  # each image hashed once
        clusters = self.assign(images, labels=labels, keys=keys)
        family = self.family
        out = [family.at_size(self.deltas[c], (img.height, img.width)) for c, img in zip(clusters, images)]
        if self.config.phase == "per-image":
            out = [phase_shift(d, k) for d, k in zip(out, keys)]
        if self.sample_residual is not None:
            out = [d if r is None else d + resize_delta(r, tuple(d.shape[-2:]))
                   for d, r in zip(out, self.residuals_for(images, keys=keys))]
        return out

    def assign(self, images: Sequence[Image.Image], *, labels: Sequence[object] | None = None,
               keys: Sequence[bytes] | None = None) -> np.ndarray:
        """Cluster of each supported-mode image: the fit-set cache (by content hash, ``keys`` when
        already computed), else the nearest centre.

        Label-aware: only the clusters of the image's class are candidates (one cluster per
        class needs no surrogate at all); a cached cluster of another class is not used.
        """
        out = np.full(len(images), -1, dtype=np.int64)
        cls = self.label_rows(labels, len(images)) if self.config.label_aware else None
        if self.use_cache and self._cache:
            keys = [content_key(img) for img in images] if keys is None else keys
            for i, key in enumerate(keys):
                out[i] = self._cache.get(key, -1)
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

    def _load_surrogate(self, name: str) -> Surrogate:
        return load_surrogate(name, image_size=self.config.surrogate_image_size)

    # ------------------------------------------------------------------ persistence
    def _extra_config(self) -> dict:
        return {"permutation": self.permutation.tolist(),
                "mode": "label-aware" if self.config.label_aware else "label-free", "classes": self.classes}

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        out = {"centres": torch.from_numpy(self.centres)}
        if self.cluster_class is not None:
            out["cluster_class"] = torch.from_numpy(np.ascontiguousarray(self.cluster_class))
        out.update({f"transform_{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.transform.items()})
        if self.sample_residual is not None:
            out["sample_residual"] = self.sample_residual.contiguous()
        return out

    @classmethod
    def _parts_kwargs(cls, cfg: dict, tensors: dict[str, torch.Tensor]) -> dict:
        return {
            "centres": tensors["centres"].numpy(),
            "permutation": np.asarray(cfg["permutation"]),
            "classes": cfg.get("classes"),
            "cluster_class": tensors["cluster_class"].numpy() if "cluster_class" in tensors else None,
            "transform": {k[len("transform_"):]: v.numpy() for k, v in tensors.items() if k.startswith("transform_")},
            "sample_residual": tensors.get("sample_residual"),
        }

    @property
    def method(self) -> str:
        """``UC-CLIP`` for a CLIP surrogate, ``UC`` otherwise (the paper's names); `` (label-aware)``
        is added when the keys are nested in the publisher's classes."""
        return uc_method_name(clip=self.surrogate_info.get("kind") == "clip", label_aware=self.config.label_aware)

    @property
    def label_aware(self) -> bool:
        """True when the keys are nested in the publisher's classes (the label-aware mode)."""
        return bool(self.config.label_aware)

    def __repr__(self) -> str:
        c = self.config
        return (f"UCProtector(method={self.method}, surrogate={self.surrogate_info.get('name')!r}, "
                f"n_clusters={c.n_clusters}, epsilon={c.epsilon_levels}/255, working_hw={self.working_hw})")
