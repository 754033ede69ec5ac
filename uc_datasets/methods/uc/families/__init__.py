"""The perturbation families of Unlearnable Clusters, one class a file, listed by name.

Each family (``UCConfig.pattern``) is a :class:`~uc_datasets.methods.uc.families.base.Family`:
its capability flags tell the fit what it needs (a surrogate loss, pixels, a period, levels),
:meth:`~uc_datasets.methods.uc.families.base.Family.fit` makes one perturbation per key and
:meth:`~uc_datasets.methods.uc.families.base.Family.at_size` applies one at an image's own size.
The names live in :data:`uc_datasets.methods.uc.config.FAMILIES` too (light to import, for the
command line); ``tests/methods/uc/test_families.py`` checks that both agree.

Example:
    >>> from uc_datasets.methods.uc.config import UCConfig
    >>> get_family("block")(UCConfig(pattern="block")).name
    'block'
"""

from __future__ import annotations

from uc_datasets.methods.uc.families.ar import AR
from uc_datasets.methods.uc.families.base import Family, FamilyInputs, FamilyOutput, tile_at_size
from uc_datasets.methods.uc.families.block import Block
from uc_datasets.methods.uc.families.class_mean import ClassMean
from uc_datasets.methods.uc.families.error_min import ErrorMin
from uc_datasets.methods.uc.families.generator import Generator
from uc_datasets.methods.uc.families.periodic_generator import PeriodicGenerator
from uc_datasets.methods.uc.families.tile import Tile
from uc_datasets.methods.uc.families.tile_code import TileCode
from uc_datasets.methods.uc.families.tile_error_min import TileErrorMin
from uc_datasets.methods.uc.families.unrolled import Unrolled
from uc_datasets.methods.uc.families.wave import Wave

__all__ = ["FAMILY_TYPES", "Family", "FamilyInputs", "FamilyOutput", "get_family", "tile_at_size"]

#: Every family class by its ``UCConfig.pattern`` name.
FAMILY_TYPES: dict[str, type[Family]] = {cls.name: cls for cls in (
    Generator, PeriodicGenerator, Tile, TileCode, AR, Block, Wave, ErrorMin, TileErrorMin, ClassMean, Unrolled)}


def get_family(name: str) -> type[Family]:
    """The family class named ``name`` (``UCConfig.pattern``); ``ValueError`` listing the names otherwise.

    Example:
        >>> get_family("tile").periodic
        True
    """
    try:
        return FAMILY_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown perturbation family {name!r}; choose one of {sorted(FAMILY_TYPES)}.") from None
