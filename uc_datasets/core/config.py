"""What every method's config shares: the epsilon check and the JSON round trip.

Imports nothing heavy, so ``uc_datasets.UCConfig`` and the command line stay light.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any


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
        hint = (f"Did you mean {name}={eps:g}/255 = {eps / 255:.4f}?" if eps <= 255 else
                f"{eps:g} is above 255 levels too, so no reading is a valid bound; use e.g. {name}=16/255.")
        raise ValueError(f"{name}={eps:g} is larger than 1: it is in [0, 1] pixel units, not uint8 levels. {hint}")
    if eps * 255 <= 0.5 + 1e-9:
        raise ValueError(
            f"{name}={eps:g} ({eps * 255:.3g}/255) is at most half a uint8 level and would change no pixel "
            "(perturbations are rounded to whole levels); use at least 1/255 (the paper uses 16/255)."
        )
    return eps


def choice(default: str, choices: Sequence[str]) -> Any:
    """A config field whose value must be one of ``choices``: :class:`BaseConfig` checks it, and the
    command line lists the choices from here (:func:`config_choices`), so they are written once.

    Example:
        >>> @dataclass
        ... class C(BaseConfig):
        ...     epsilon: float = 8 / 255
        ...     loss: str = choice("kl", ("kl", "mse"))
        >>> C(loss="l1")
        Traceback (most recent call last):
        ValueError: loss must be one of ('kl', 'mse'), got 'l1'.
    """
    return field(default=default, metadata={"choices": tuple(choices)})


def check_int(prefix: str = "", **values: int) -> None:
    """Raise ``ValueError`` naming each value that is not an integer >= 1 (``prefix`` names whose).

    Example:
        >>> check_int(rounds=3)
        >>> check_int("unrolled option ", rounds=0)
        Traceback (most recent call last):
        ValueError: unrolled option rounds must be an integer >= 1, got 0.
    """
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{prefix}{name} must be an integer >= 1, got {v!r}.")


def check_positive(prefix: str = "", **values: float) -> None:
    """Raise ``ValueError`` naming each value that is not a finite positive number.

    Example:
        >>> check_positive(lr=0.1)
        >>> check_positive("error-min ", lr=0)
        Traceback (most recent call last):
        ValueError: error-min lr must be a positive number, got 0.
    """
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{prefix}{name} must be a positive number, got {v!r}.")


def config_field(config_class: type, name: str) -> Field:
    """The dataclass field ``name`` of ``config_class`` (``KeyError`` if it has none)."""
    return {f.name: f for f in fields(config_class)}[name]


def config_choices(config_class: type, name: str) -> tuple[str, ...]:
    """The choices of the :func:`choice` field ``name`` of ``config_class``.

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> config_choices(UCConfig, "loss")
        ('kl', 'cosine', 'mse')
    """
    return config_field(config_class, name).metadata["choices"]


def config_default(config_class: type, name: str) -> Any:
    """The default of field ``name`` of ``config_class`` (what a command line shows as its default)."""
    f = config_field(config_class, name)
    return f.default_factory() if f.default is MISSING else f.default


@dataclass
class BaseConfig:
    """Base of :class:`~uc_datasets.UCConfig` and :class:`~uc_datasets.methods.baseline.BaselineConfig`.

    A subclass is a dataclass with an ``epsilon`` field; it checks its own settings in
    :meth:`_check_params` (run on creation, after the epsilon check) and gets ``epsilon_levels``,
    ``to_dict`` and ``from_dict`` (which ignores unknown keys, so configs saved by a newer
    version still load).
    """

    # ``epsilon`` is declared by each subclass, with its default and at its place among the fields.

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a fix for every bad setting: epsilon and the :func:`choice` fields
        here, then :meth:`_check_params`."""
        self.epsilon = as_epsilon(self.epsilon)
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise ValueError(f"{f.name} must be one of {allowed}, got {getattr(self, f.name)!r}.")
        self._check_params()

    def _check_params(self) -> None:
        """The subclass's own checks (as ART's ``_check_params``): raise ``ValueError`` saying how to fix it."""

    @property
    def epsilon_levels(self) -> int:
        """The bound in uint8 levels that every protected pixel respects: ceil(eps * 255)."""
        return math.ceil(self.epsilon * 255 - 1e-9)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def epsilon_from_levels(levels: float, *, name: str = "epsilon") -> float:
    """A bound given in uint8 levels (the command line's ``--epsilon 16``) in [0, 1] pixel units.

    The one conversion from levels: every command uses it, and :func:`as_epsilon` checks the result.

    Example:
        >>> epsilon_from_levels(16) == 16 / 255
        True
    """
    return as_epsilon(float(levels) / 255, name=name)
