"""Whether to show progress bars: an explicit ``progress=`` wins, else huggingface_hub's setting.

Every ``progress: bool | None = None`` of the library goes through :func:`progress_enabled`, so
that ``HF_HUB_DISABLE_PROGRESS_BARS=1``, ``huggingface_hub.utils.disable_progress_bars()`` (all
bars) and ``disable_progress_bars("uc_datasets")`` (this library's only) turn our bars off the
way they turn off those of ``huggingface_hub`` and ``datasets``; ``progress=True`` or ``False``
overrides them.

Example:
    >>> progress_enabled(False), progress_enabled(True)
    (False, True)
"""

from __future__ import annotations

#: The huggingface_hub progress-bar group of this library (``disable_progress_bars(PROGRESS_GROUP)``).
PROGRESS_GROUP = "uc_datasets"


def progress_enabled(progress: bool | None = None) -> bool:
    """``progress`` when it is given, else whether huggingface_hub's progress bars are on for
    :data:`PROGRESS_GROUP` (``HF_HUB_DISABLE_PROGRESS_BARS``, ``disable_progress_bars()``).

    Example:
        >>> from huggingface_hub.utils import disable_progress_bars
        >>> with disable_progress_bars(PROGRESS_GROUP):
        ...     progress_enabled(None), progress_enabled(True)
        (False, True)
    """
    if progress is not None:
        return bool(progress)
    from huggingface_hub.utils import are_progress_bars_disabled

    return not are_progress_bars_disabled(PROGRESS_GROUP)
