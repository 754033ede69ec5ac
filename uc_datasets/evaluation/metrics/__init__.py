"""Local ``evaluate`` modules shipped with the package (loaded without network).

The metric is a complete ``evaluate`` module folder: ``unlearnability.py`` (the metric),
``README.md`` (its metric card, with the YAML header of evaluate's cards), ``requirements.txt``
and ``app.py`` (the Gradio widget of an evaluate Space), so the folder can be pushed to the
Hub as it is (``evaluate-cli`` layout).

Example:
    >>> import evaluate
    >>> metric = evaluate.load(UNLEARNABILITY_METRIC_PATH, keep_in_memory=True)
    >>> metric.compute(predictions=[0, 1, 1, 1], references=[0, 1, 0, 0], clean_accuracy=1.0)
    {'accuracy': 0.5, 'chance': 0.75, 'protection_score': -1.0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["UNLEARNABILITY_METRIC_PATH", "load_unlearnability"]

UNLEARNABILITY_METRIC_PATH: str = str(Path(__file__).resolve().parent / "unlearnability")


def load_unlearnability(**kwargs: Any) -> Any:
    """``evaluate.load`` the packaged unlearnability metric (in memory unless told otherwise).

    Example:
        >>> load_unlearnability().name
        'unlearnability'
    """
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(UNLEARNABILITY_METRIC_PATH, **kwargs)
