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


#: ``load_source`` keywords that the source options set (``--config-name`` -> ``name``, ...).
SOURCE_OPTIONS = {"name": "--config-name", "revision": "--revision", "data_dir": "--data-dir",
                  "data_files": "--data-files"}


def add_source_arguments(parser: argparse.ArgumentParser, *, applies_to: str = "the dataset", prefix: str = "",
                         token: bool = True) -> None:
    """The Hub dataset options of ``load_dataset``: config name, revision, data dir, data files, token.

    ``applies_to`` names the argument the first four apply to (in the help); the token applies to
    every Hub dataset the command reads (``token=False`` where the command has its own). ``prefix``
    names the options of a second dataset (``"clean-"``: ``--clean-config-name``, ...).
    :func:`source_options` (with the same prefix) turns them into ``load_source`` keywords.

    Example:
        >>> p = argparse.ArgumentParser(); add_source_arguments(p)
        >>> source_options(p.parse_args(["--config-name", "grey", "--revision", "v2"]))
        {'name': 'grey', 'revision': 'v2'}
        >>> add_source_arguments(p, applies_to="--clean", prefix="clean-", token=False)
        >>> source_options(p.parse_args(["--clean-config-name", "grey"]), prefix="clean-")
        {'name': 'grey'}
    """
    hub = parser.add_argument_group(f"Hub dataset options of {applies_to} (as datasets.load_dataset takes them)")
    hub.add_argument(f"--{prefix}config-name", default=None, metavar="NAME",
                     help=f"dataset config (subset) of {applies_to}, load_dataset(name=...)")
    hub.add_argument(f"--{prefix}revision", default=None, help=f"branch, tag or commit of {applies_to}")
    hub.add_argument(f"--{prefix}data-dir", default=None,
                     help=f"folder of {applies_to}'s repo to read (load_dataset data_dir)")
    hub.add_argument(f"--{prefix}data-files", nargs="+", default=None, metavar="[SPLIT=]PATTERN",
                     help=f"data files of {applies_to}: glob patterns, or SPLIT=PATTERN to name their split "
                          f"(e.g. --{prefix}data-files train=data/train-*.parquet test=data/test-*.parquet)")
    if token:
        hub.add_argument("--token", default=None,
                         help="Hub token for private or gated datasets (better: set HF_TOKEN or run `hf auth login`); "
                              "never printed or logged")


def data_files_value(items: list[str] | None) -> str | list[str] | dict[str, list[str]] | None:
    """``--data-files`` as ``load_dataset`` takes it: a pattern, a list, or ``{split: [patterns]}``.

    Example:
        >>> data_files_value(["train=a/*.parquet", "test=b/*.parquet", "train=c/*.parquet"])
        {'train': ['a/*.parquet', 'c/*.parquet'], 'test': ['b/*.parquet']}
        >>> data_files_value(["data/*.parquet"])
        'data/*.parquet'
    """
    if not items:
        return None
    named = ["=" in item for item in items]
    if all(named):
        files: dict[str, list[str]] = {}
        for item in items:
            split, _, pattern = item.partition("=")
            files.setdefault(split, []).append(pattern)
        return files
    if any(named):
        raise ValueError(f"--data-files mixes SPLIT=PATTERN and plain patterns ({' '.join(items)}); name the split "
                         "of every pattern, or of none (then they all go to the train split).")
    return items[0] if len(items) == 1 else list(items)


def source_options(args: argparse.Namespace, *, prefix: str = "") -> dict:
    """The ``load_source`` keywords set by :func:`add_source_arguments` (with its ``prefix``), the
    token included (unset ones left out)."""
    stem = prefix.replace("-", "_")
    options = {key: getattr(args, stem + ("config_name" if key == "name" else key), None) for key in SOURCE_OPTIONS}
    options["data_files"] = data_files_value(options["data_files"])
    options["token"] = getattr(args, "token", None)
    return {k: v for k, v in options.items() if v is not None}
