"""Argument types shared by the commands (no heavy imports)."""

from __future__ import annotations

import argparse


def epsilon_levels(text: str) -> float:
    """``argparse`` type of ``--epsilon``: a bound in uint8 levels, > 0.5 and <= 255.

    A value below 1 is refused as a likely fraction (Python's units), naming both readings.

    Example:
        >>> epsilon_levels("16")
        16.0
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of uint8 levels, e.g. 16 for 16/255; got {text!r}")
    if not 1 <= value <= 255:  # NaN fails this too
        if 0 < value < 1:
            raise argparse.ArgumentTypeError(
                f"{text} is in uint8 levels on the command line (16 means 16/255); did you mean "
                f"{max(1, round(value * 255))} (levels) or {value:g} as a fraction (= {value * 255:.3g} levels)? "
                f"Write --epsilon {max(1, round(value * 255))}."
            )
        raise argparse.ArgumentTypeError(f"--epsilon is in uint8 levels from 1 to 255 (16 for 16/255); got {text}")
    return value
