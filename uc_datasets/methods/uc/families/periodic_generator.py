"""``pattern="periodic-generator"``: the generator makes one ``period x period`` tile, repeated."""

from __future__ import annotations

from typing import ClassVar

from uc_datasets.methods.uc.families.generator import Generator

__all__ = ["PeriodicGenerator"]


class PeriodicGenerator(Generator):
    """:class:`~uc_datasets.methods.uc.families.generator.Generator` whose output is periodic by
    construction: each cluster's generator makes one tile, repeated over the image (and over
    each image's own size at map time).

    Example:
        >>> from uc_datasets.methods.uc.config import UCConfig
        >>> PeriodicGenerator(UCConfig(pattern="periodic-generator")).periodic
        True
    """

    name: ClassVar[str] = "periodic-generator"
    uses_period: ClassVar[bool] = True
    periodic: ClassVar[bool] = True
