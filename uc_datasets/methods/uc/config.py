"""The configuration of an Unlearnable Clusters fit, validated, and serialised as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from uc_datasets.core.config import BaseConfig, choice

#: UC's surrogate when none is given (the paper's UC-CLIP); the baselines default to EfficientNet-Lite0.
DEFAULT_SURROGATE = "openai/clip-vit-base-patch32"
LOSSES = ("kl", "cosine", "mse")
TRAIN_ON = ("members", "all")
PARAMETRIZATIONS = ("generator", "direct")
PERMUTATIONS = ("shift", "derangement")
AUGMENT_MODES = ("reference", "shifts")
LEVEL_SOURCES = ("auto", "features", "class-names")
FEATURE_NORMS = ("none", "l2", "l2-pca")
PHASES = ("fixed", "per-image")
#: Every perturbation family (``UCConfig.pattern``), one class each in
#: :mod:`uc_datasets.methods.uc.families` (which says what each needs). Kept here, light to
#: import, so the command line builds its choices from it; a test checks that both agree.
FAMILIES = ("generator", "periodic-generator", "tile", "tile-code", "ar", "block", "wave", "error-min",
            "tile+error-min", "class-mean", "unrolled")
#: The label-aware default, chosen by the rule in benchmarks/README.md ("Protection from the first
#: steps", written before its screen ran) and confirmed by issue 27's final run (test split, three
#: seeds; BENCHMARKS.md): keys crafted against the first SGD steps of fresh CNNs
#: (``pattern="unrolled"``), started from the class-mean keys, with rounds on the 5- and 2-group
#: labellings of the class names (``levels``; from the names when the label column names its
#: classes, else from the classes' mean surrogate features). It costs minutes of crafting (about
#: four on one CPU core for 2,000 28 px images) and a class-name encoder; :data:`BLOCK_KEYS` is
#: the one-second model-free choice it replaced.
LABEL_AWARE_DEFAULTS: dict[str, Any] = {"pattern": "unrolled", "levels": (5, 2), "options": {"init": "class-mean"}}
#: The label-aware default before issue 27 (the best-epoch screen's choice): one random +-eps grid
#: of 4 x 4-pixel blocks per class. Model-free: no training, no class-name encoder, no surrogate.
BLOCK_KEYS: dict[str, Any] = {"pattern": "block"}
#: The label-aware default before the block keys (the first best-epoch screen's choice): the tile plus
#: an error-minimising residual, with coarser levels from the class names.
PREVIOUS_LABEL_AWARE_DEFAULTS: dict[str, Any] = {"pattern": "tile+error-min", "levels": (5, 2),
                                                 "level_source": "class-names", "error_min": {"rounds": 30}}
#: Reference optimiser values (Adam, cosine annealing per iteration).
DEFAULT_LR = {"generator": 1e-4, "direct": 1e-2}


_DEFAULT_PERIOD = 4


def _families_with(flag: str) -> list[str]:
    """The names of the families whose class sets ``flag`` (for error messages)."""
    from uc_datasets.methods.uc.families import FAMILY_TYPES

    return [name for name, cls in FAMILY_TYPES.items() if getattr(cls, flag)]


@dataclass
class UCConfig(BaseConfig):
    """Every setting of a fit. Defaults follow the reference code (docs/design.md §1).

    Example:
        >>> UCConfig(epsilon=8 / 255).epsilon_levels
        8
    """

    surrogate: str = DEFAULT_SURROGATE
    n_clusters: int = 10
    epsilon: float = 16 / 255
    epochs: int = 50
    seed: int = 0
    loss: str = choice("kl", LOSSES)
    train_on: str = choice("members", TRAIN_ON)
    parametrization: str = choice("generator", PARAMETRIZATIONS)
    permutation: str = choice("shift", PERMUTATIONS)
    batch_size: int = 256
    lr: float | None = None
    weight_decay: float = 5e-4
    min_lr: float = 1e-6
    augment: bool = True
    working_size: int = 224
    surrogate_image_size: int | None = None
    ngf: int = 64
    n_blocks: int = 6
    feature_batch_size: int = 64
    # --- perturbation family (see uc_datasets.methods.uc.patterns) ---------------------------------
    pattern: str = choice("generator", FAMILIES)
    period: int = _DEFAULT_PERIOD
    augment_mode: str = choice("reference", AUGMENT_MODES)
    # --- keys: label-aware mode and multi-level keys ------------------------------------
    label_column: str | None = None
    clusters_per_class: int = 1
    levels: tuple[int, ...] = ()
    level_shares: tuple[float, ...] | None = None
    level_source: str = choice("auto", LEVEL_SOURCES)
    name_encoder: str = "bert-base-uncased"
    feature_norm: str = choice("none", FEATURE_NORMS)
    # --- keyed error-minimising noise (pattern="error-min" / "tile+error-min") ---------------
    error_min: dict = field(default_factory=dict)
    tile_share: float = 0.5
    phase: str = choice("fixed", PHASES)
    # --- settings of the chosen family (its class in uc_datasets.methods.uc.families says which) ----
    options: dict = field(default_factory=dict)
    # --- sample-wise contrastive residual (uc_datasets.methods.uc.contrastive_noise) -----------
    contrastive_share: float = 0.0
    contrastive: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.levels = tuple(int(v) for v in self.levels) if not isinstance(self.levels, int) else (self.levels,)
        if self.level_shares is not None:
            self.level_shares = tuple(float(v) for v in self.level_shares)
        for name in ("options", "error_min", "contrastive"):  # the config's own copy, never a shared default's
            if isinstance(getattr(self, name), dict):
                setattr(self, name, dict(getattr(self, name)))
        super().__post_init__()

    def _check_params(self) -> None:
        """Raise ``ValueError`` with a fix for every bad setting (the choices are checked by ``BaseConfig``)."""
        for name in ("n_clusters", "epochs", "batch_size", "working_size", "ngf", "feature_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (2 if name == "n_clusters" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'n_clusters' else 1}, got {v!r}.")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        for name in ("period", "clusters_per_class"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
        if any(v < 2 for v in self.levels):
            raise ValueError(f"levels are numbers of coarser key groups and must each be >= 2, got {self.levels}.")
        if len(set(self.levels)) != len(self.levels):
            unique = tuple(dict.fromkeys(self.levels))
            raise ValueError(f"levels={self.levels} repeats a level: each is a different number of key groups, and a "
                             f"repeated one only adds the same grouping twice. Use levels={unique}.")
        family = self.family
        if self.levels and not family.supports_levels:
            raise ValueError(f"multi-level keys (levels={self.levels}) are built for the families that draw or craft "
                             f"a pattern per key ({', '.join(_families_with('supports_levels'))}); pattern="
                             f"{self.pattern!r} trains one perturbation per cluster.")
        if self.period != _DEFAULT_PERIOD and not family.uses_period:
            raise ValueError(f"period={self.period} is the tile period or block size of the families "
                             f"{', '.join(_families_with('uses_period'))}; pattern={self.pattern!r} does not use "
                             "it. Leave period at its default, or choose one of those families.")
        if not isinstance(self.error_min, dict):
            raise ValueError(f"error_min must be a dict of KeyedNoiseConfig settings, got {self.error_min!r}.")
        if not isinstance(self.options, dict):
            raise ValueError(f"options must be a dict of the family's settings, got {self.options!r}.")
        family(self).check()
        if not (isinstance(self.tile_share, (int, float)) and 0 < self.tile_share < 1):
            raise ValueError(f"tile_share is the tile's fraction of epsilon in tile+error-min, in (0, 1); "
                             f"got {self.tile_share!r}.")
        if isinstance(self.contrastive_share, bool) or not (
                isinstance(self.contrastive_share, (int, float)) and 0 <= self.contrastive_share < 1):
            raise ValueError(f"contrastive_share is the sample-wise contrastive residual's fraction of epsilon, in "
                             f"[0, 1) (0: none); got {self.contrastive_share!r}.")
        if not isinstance(self.contrastive, dict):
            raise ValueError(f"contrastive must be a dict of ContrastiveNoiseConfig settings, "
                             f"got {self.contrastive!r}.")
        if self.contrastive_share:
            if not family.supports_contrastive:
                raise ValueError(f"a contrastive residual (contrastive_share={self.contrastive_share}) is added to the "
                                 f"families {', '.join(_families_with('supports_contrastive'))}; pattern="
                                 f"{self.pattern!r} trains its perturbations against the surrogate instead.")
            if round(self.epsilon * 255) < 2:
                raise ValueError("a contrastive residual needs epsilon >= 2/255: one level for the class-wise part and "
                                 "one for the residual.")
            self.contrastive_config.validate()
        shares = self.shares
        if len(shares) != len(self.levels) + 1 or min(shares) <= 0 or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(f"level_shares must give one positive share of epsilon to the clusters and one to each "
                             f"of levels={self.levels}, adding up to 1; got {self.level_shares}.")
        if self.label_column is not None and not isinstance(self.label_column, str):
            raise ValueError(f"label_column must be a column name or None, got {self.label_column!r}.")

    @property
    def family(self):
        """The :class:`~uc_datasets.methods.uc.families.base.Family` class of ``pattern``.

        Example:
            >>> UCConfig(pattern="block").family.uses_period
            True
        """
        from uc_datasets.methods.uc.families import get_family

        return get_family(self.pattern)

    @property
    def budgets(self) -> tuple[float, float]:
        """``(keys' bound, contrastive residual's bound)``: whole uint8 levels that add up to epsilon,
        the residual getting ``contrastive_share`` of them (at least one level; none without a residual).

        Example:
            >>> [round(b * 255) for b in UCConfig(epsilon=16 / 255, pattern="tile", contrastive_share=0.25).budgets]
            [12, 4]
        """
        if not self.contrastive_share:
            return self.epsilon, 0.0
        levels = round(self.epsilon * 255)
        residual = min(max(1, round(levels * self.contrastive_share)), levels - 1)
        return (levels - residual) / 255, residual / 255

    @property
    def shares(self) -> tuple[float, ...]:
        """Share of epsilon of the clusters, then of each coarser level: ``level_shares``, or
        half to the clusters and the rest split evenly over ``levels``.

        Example:
            >>> UCConfig(pattern="tile", levels=(5, 2)).shares
            (0.5, 0.25, 0.25)
        """
        if self.level_shares is not None:
            return tuple(self.level_shares)
        if not self.levels:
            return (1.0,)
        rest = 0.5 / len(self.levels)
        return (0.5,) + (rest,) * len(self.levels)

    @property
    def error_min_config(self):
        """The :class:`~uc_datasets.methods.uc.keyed_noise.KeyedNoiseConfig` of ``error_min``.

        Example:
            >>> UCConfig(pattern="error-min", error_min={"rounds": 3}).error_min_config.rounds
            3
        """
        from dataclasses import fields as _fields

        from uc_datasets.methods.uc.keyed_noise import KeyedNoiseConfig

        known = {f.name for f in _fields(KeyedNoiseConfig)}
        unknown = sorted(set(self.error_min) - known)
        if unknown:
            raise ValueError(f"unknown error_min settings {unknown}; choose from {sorted(known)}.")
        return KeyedNoiseConfig(**self.error_min)

    @property
    def contrastive_config(self):
        """The :class:`~uc_datasets.methods.uc.contrastive_noise.ContrastiveNoiseConfig` of ``contrastive``.

        Example:
            >>> UCConfig(pattern="tile", contrastive_share=0.25, contrastive={"rounds": 2}).contrastive_config.rounds
            2
        """
        from dataclasses import fields as _fields

        from uc_datasets.methods.uc.contrastive_noise import ContrastiveNoiseConfig

        known = {f.name for f in _fields(ContrastiveNoiseConfig)}
        unknown = sorted(set(self.contrastive) - known)
        if unknown:
            raise ValueError(f"unknown contrastive settings {unknown}; choose from {sorted(known)}.")
        return ContrastiveNoiseConfig(**self.contrastive)

    @property
    def label_aware(self) -> bool:
        """Whether the keys are nested inside the classes of ``label_column``."""
        return self.label_column is not None

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.parametrization]
