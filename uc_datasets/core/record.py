"""The protection record: what a protected dataset says about how it was protected.

One record, built here from the protector, goes into the protected dataset's
``info.description`` (``uc-datasets protect``) and onto the dataset card (``push``). It holds
nothing secret: the method's card name, the surrogate (a local path only by its last part),
epsilon, the number of perturbations and the mode.

Example:
    >>> public_surrogate_name("/home/me/models/clip-b32")
    'clip-b32 (local model)'
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uc_datasets.core.protector import BaseProtector

__all__ = ["protection_record", "public_surrogate_name"]


def public_surrogate_name(name: str) -> str:
    """The surrogate as shown on a public card: a Hub id as is, a local path by its last part only.

    Example:
        >>> public_surrogate_name("openai/clip-vit-base-patch32")
        'openai/clip-vit-base-patch32'
    """
    if name.startswith(("/", "./", "../", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", name):
        last = re.split(r"[\\/]", name.rstrip("/\\"))[-1]
        return f"{last} (local model)"
    return name


def protection_record(protector: BaseProtector) -> dict:
    """``{"method", "surrogate", "epsilon", "n_clusters", "mode"}`` of a fitted protector.

    ``n_clusters`` is the number of distinct perturbations (clusters, classes or images);
    ``mode`` is ``label-aware`` for a protector keyed to the publisher's labels, else ``label-free``.

    Example:
        >>> protection_record(uc_protect)["method"]  # doctest: +SKIP
        'UC'
    """
    return {"method": protector.method,
            "surrogate": public_surrogate_name(str(protector.surrogate_info.get("name"))),
            "epsilon": float(protector.config.epsilon),
            "n_clusters": int(protector.n_perturbations),
            "mode": "label-aware" if protector.label_aware else "label-free"}
