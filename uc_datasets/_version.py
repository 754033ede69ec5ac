"""The package version, on the ground floor: it imports nothing, so every layer may import it.

``core/`` and ``methods/`` read the version from here, never from the package root
``uc_datasets`` (whose lazy exports import them: that would close a circle).

Example:
    >>> from uc_datasets._version import __version__
    >>> __version__.count(".") >= 1
    True
"""

__version__ = "0.1.0"
