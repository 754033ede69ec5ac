"""The configuration of an Unlearnable Clusters fit, validated, and serialised as JSON."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

LOSSES = ("kl", "cosine", "mse")
TRAIN_ON = ("members", "all")
PARAMETRIZATIONS = ("generator", "direct")
PERMUTATIONS = ("shift", "derangement")
AUGMENT_MODES = ("reference", "shifts")
LEVEL_SOURCES = ("auto", "features", "class-names")
FEATURE_NORMS = ("none", "l2", "l2-pca")
#: Reference optimiser values (Adam, cosine annealing per iteration).
DEFAULT_LR = {"generator": 1e-4, "direct": 1e-2}


def as_epsilon(value: object, *, name: str = "epsilon") -> float:
    """``value`` as an L-inf bound in [0, 1] pixel units, or ``ValueError`` saying how to fix it.

    Any real number is accepted (``float``, ``int``, ``np.float32``, a one-element torch
    tensor); bools, strings, NaN, values above 1 and values that change no pixel are refused.
    A pixel changes only when ``round(epsilon * 255) >= 1``, so the bound must be above half a level.

    Example:
        >>> as_epsilon(16 / 255) == 16 / 255
        True
    """
    if hasattr(value, "numel") and hasattr(value, "item") and value.numel() == 1:  # a torch scalar
        value = value.item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a number in pixel units of [0, 1], e.g. 16/255, got {value!r}.")
    eps = float(value)
    if abs(eps * 255 - round(eps * 255)) < 1e-4:  # k/255 given in float32 (or rounded): exactly k/255
        eps = round(eps * 255) / 255
    if eps > 1:
        raise ValueError(
            f"{name}={eps:g} is larger than 1: it is in [0, 1] pixel units, not uint8 levels. "
            f"Did you mean {name}={eps:g}/255 = {eps / 255:.4f}?"
        )
    if eps * 255 <= 0.5 + 1e-9:
        raise ValueError(
            f"{name}={eps:g} ({eps * 255:.3g}/255) is at most half a uint8 level and would change no pixel "
            "(perturbations are rounded to whole levels); use at least 1/255 (the paper uses 16/255)."
        )
    return eps


@dataclass
class UCConfig:
    """Every setting of a fit. Defaults follow the reference code (DESIGN.md §1).

    Example:
        >>> UCConfig(epsilon=8 / 255).epsilon_levels
        8
    """

    surrogate: str = "openai/clip-vit-base-patch32"
    n_clusters: int = 10
    epsilon: float = 16 / 255
    epochs: int = 50
    seed: int = 0
    loss: str = "kl"
    train_on: str = "members"
    parametrization: str = "generator"
    permutation: str = "shift"
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
    # --- perturbation family (see uc_datasets.protection.patterns) ---------------------------------
    pattern: str = "generator"
    period: int = 4
    augment_mode: str = "reference"
    # --- keys: label-aware mode and multi-level keys ------------------------------------
    label_column: str | None = None
    clusters_per_class: int = 1
    levels: tuple[int, ...] = ()
    level_shares: tuple[float, ...] | None = None
    level_source: str = "auto"
    name_encoder: str = "bert-base-uncased"
    feature_norm: str = "none"

    def __post_init__(self) -> None:
        self.levels = tuple(int(v) for v in self.levels) if not isinstance(self.levels, int) else (self.levels,)
        if self.level_shares is not None:
            self.level_shares = tuple(float(v) for v in self.level_shares)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a fix for every bad setting."""
        self.epsilon = as_epsilon(self.epsilon)
        for name, allowed in (("loss", LOSSES), ("train_on", TRAIN_ON),
                              ("parametrization", PARAMETRIZATIONS), ("permutation", PERMUTATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        for name in ("n_clusters", "epochs", "batch_size", "working_size", "ngf", "feature_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (2 if name == "n_clusters" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'n_clusters' else 1}, got {v!r}.")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        from .patterns import FAMILIES, MODEL_FREE

        for name, allowed in (("pattern", FAMILIES), ("augment_mode", AUGMENT_MODES),
                              ("level_source", LEVEL_SOURCES), ("feature_norm", FEATURE_NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        for name in ("period", "clusters_per_class"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
        if any(v < 2 for v in self.levels):
            raise ValueError(f"levels are numbers of coarser key groups and must each be >= 2, got {self.levels}.")
        if self.levels and self.pattern not in MODEL_FREE:
            raise ValueError(f"multi-level keys (levels={self.levels}) are built for the model-free patterns "
                             f"{MODEL_FREE}; pattern={self.pattern!r} trains one perturbation per cluster.")
        shares = self.shares
        if len(shares) != len(self.levels) + 1 or min(shares) <= 0 or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(f"level_shares must give one positive share of epsilon to the clusters and one to each "
                             f"of levels={self.levels}, adding up to 1; got {self.level_shares}.")
        if self.label_column is not None and not isinstance(self.label_column, str):
            raise ValueError(f"label_column must be a column name or None, got {self.label_column!r}.")

    @property
    def epsilon_levels(self) -> int:
        """The bound in uint8 levels that every protected pixel respects: ceil(eps * 255)."""
        return math.ceil(self.epsilon * 255 - 1e-9)

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
    def label_aware(self) -> bool:
        """Whether the keys are nested inside the classes of ``label_column``."""
        return self.label_column is not None

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.parametrization]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UCConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
