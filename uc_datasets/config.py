"""The configuration of an Unlearnable Clusters fit, validated, and serialised as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

LOSSES = ("kl", "cosine", "mse")
TRAIN_ON = ("members", "all")
PARAMETRIZATIONS = ("generator", "direct")
PERMUTATIONS = ("shift", "derangement")
#: Reference optimiser values (Adam, cosine annealing per iteration).
DEFAULT_LR = {"generator": 1e-4, "direct": 1e-2}


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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a fix for every bad setting."""
        eps = self.epsilon
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps):
            raise ValueError(f"epsilon must be a number in pixel units of [0, 1], got {eps!r}.")
        if eps > 1:
            raise ValueError(
                f"epsilon={eps} is larger than 1: it is in [0, 1] pixel units, not uint8 levels. "
                f"Did you mean epsilon={eps:g}/255 = {eps / 255:.4f}?"
            )
        if eps * 255 < 0.5:
            raise ValueError(
                f"epsilon={eps} is below half a uint8 level and would change no pixel; use at least 1/255 "
                "(the paper uses 16/255)."
            )
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

    @property
    def epsilon_levels(self) -> int:
        """The bound in uint8 levels that every protected pixel respects: ceil(eps * 255)."""
        return math.ceil(self.epsilon * 255 - 1e-9)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.parametrization]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UCConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
