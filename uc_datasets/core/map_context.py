"""What a protector learns from the ``Dataset.map`` that calls it, and the one place that reads ``datasets`` internals.

``datasets`` has no public way to tell a map function whether it was called with
``with_indices``, ``with_rank`` or ``input_columns``, nor to hand it the stored bytes of an
image it failed to decode. These functions read them from ``datasets``' own objects (the frame
of ``Dataset._map_single`` and the batch's arrow table); ``tests/core/test_map_context.py``
fails when an update of ``datasets`` changes what they read.
"""

from __future__ import annotations

import sys
from typing import Any


def map_call_locals() -> dict:
    """The locals of the ``Dataset.map`` (``_map_single``) calling us, or ``{}`` when not called by one:
    ``with_indices``, ``with_rank``, ``input_columns`` and the ``shard`` being mapped."""
    frame = sys._getframe(1)
    for _ in range(16):
        if frame is None:
            return {}
        if frame.f_code.co_name == "_map_single" and "with_rank" in frame.f_locals:
            return frame.f_locals
        frame = frame.f_back
    return {}


def map_flags() -> tuple[bool, bool] | None:
    """``(with_indices, with_rank)`` of the ``Dataset.map`` calling us, read from its frame (None if not found).

    Needed only for an unbatched map with one extra argument, where an index and a rank are
    both a plain ``int``.
    """
    call = map_call_locals()
    return (bool(call.get("with_indices")), bool(call.get("with_rank"))) if call else None


def mapped_features(examples: object) -> Any:
    """The ``datasets.Features`` of the rows being mapped (None when unknown)."""
    features = getattr(getattr(examples, "formatter", None), "features", None)
    if features is None:
        features = getattr(map_call_locals().get("shard"), "features", None)
    return features


def stored_column(examples: object, column: str) -> object | None:
    """The stored (undecoded) ``{"bytes", "path"}`` values of ``column`` in a batch or row that
    ``datasets`` failed to decode: a list for a batch, one value for a row; None when ``examples``
    is not a ``datasets`` batch or row (then there is nothing to fall back on)."""
    from datasets.formatting.formatting import LazyBatch

    table = getattr(examples, "pa_table", None)
    if table is None:
        return None
    raw = table.column(column).to_pylist()
    return raw if isinstance(examples, LazyBatch) else raw[0]
