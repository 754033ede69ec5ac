"""Local ``evaluate`` modules shipped with the package (loaded without network).

Example:
    >>> import evaluate
    >>> metric = evaluate.load(UNLEARNABILITY_METRIC_PATH)  # doctest: +SKIP
    >>> metric.compute(predictions=[0, 1], references=[0, 0], clean_accuracy=1.0)  # doctest: +SKIP
    {'accuracy': 0.5, 'chance': 1.0, 'protection_score': None}
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["UNLEARNABILITY_METRIC_PATH", "load_unlearnability"]

UNLEARNABILITY_METRIC_PATH: str = str(Path(__file__).resolve().parent / "unlearnability")


def load_unlearnability(**kwargs):
    """``evaluate.load`` the packaged unlearnability metric (in memory unless told otherwise).

    Example:
        >>> load_unlearnability().name  # doctest: +SKIP
        'unlearnability'
    """
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(UNLEARNABILITY_METRIC_PATH, **kwargs)
