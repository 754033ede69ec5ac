"""``uc-datasets push``: verify a protected dataset against its clean original and push it."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import datasets

from uc_datasets.commands.arguments import add_source_arguments, epsilon_levels, source_options
from uc_datasets.core.config import epsilon_from_levels
from uc_datasets.core.sources import load_source
from uc_datasets.hub import push_protected

__all__ = ["add_push_arguments", "run_push"]

logger = logging.getLogger(__name__)


def _card_method(text: str) -> str:
    """``argparse`` type of ``push --method``: a registered method's key or card name -> its card name."""
    from uc_datasets.registry import card_method_name

    try:
        return card_method_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_push_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``uc-datasets push`` arguments to ``parser``."""
    parser.add_argument("protected", help="protected dataset: a save_to_disk directory, an image folder or a Hub id")
    parser.add_argument("repo_id", help="target Hub dataset repo, e.g. me/pets-protected")
    parser.add_argument("--clean", required=True,
                        help="the clean dataset the protected one was made from (same rows and splits); every "
                             "image is verified against it before anything is pushed")
    parser.add_argument("--protector", help="saved protector (directory, or private Hub model repo) giving "
                                            "method, surrogate, epsilon and clusters")
    parser.add_argument("--epsilon", type=epsilon_levels,
                        help="without --protector: L-inf bound in uint8 levels, 1..255, e.g. 8 for 8/255")
    parser.add_argument("--method", type=_card_method,
                        help="without --protector: method for the card, any registered method (uc, UC-CLIP, "
                             "eminn, eminn-classwise, emaxn, advpoison, synper, deepconfuse)")
    parser.add_argument("--surrogate", help="without --protector: surrogate model id for the card")
    parser.add_argument("--n-clusters", type=int, help="without --protector: number of clusters for the card")
    parser.add_argument("--image-column", default="image", help="image column (default: %(default)s)")
    parser.add_argument("--split", default=None, help="push only this split (default: every split)")
    parser.add_argument("--config-name", default="default", help="dataset config (subset) name")
    parser.add_argument("--private", action=argparse.BooleanOptionalAction, default=True,
                        help="create the dataset repo private (default: yes; --no-private makes a new repo public)")
    parser.add_argument("--revision", help="branch to push to (created if missing)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--max-shard-size", help="parquet shard size, e.g. 500MB")
    parser.add_argument("--commit-message")
    parser.add_argument("--token", help="Hub token (better: set HF_TOKEN or run `hf auth login`); never logged")
    parser.add_argument("--output-dir", help="add a 'push' entry (no credentials) to run_summary.json here")
    add_source_arguments(parser, applies_to="--clean", prefix="clean-", token=False)
    return parser


def run_push(args: argparse.Namespace) -> int:
    """Run ``uc-datasets push`` from parsed :func:`add_push_arguments` arguments; returns 0."""
    protector = None
    if args.protector:
        from uc_datasets.registry import load_protector

        protector = load_protector(args.protector, token=args.token)
    protected = load_source(args.protected, split=args.split)
    clean = load_source(args.clean, split=args.split, **source_options(args, prefix="clean-"))
    result = push_protected(
        protected, args.repo_id, clean=clean, protector=protector,
        epsilon=None if args.epsilon is None else epsilon_from_levels(args.epsilon), method=args.method, surrogate=args.surrogate,
        n_clusters=args.n_clusters, image_column=args.image_column,
        split=args.split if isinstance(protected, datasets.Dataset) else None, config_name=args.config_name,
        private=args.private, revision=args.revision, create_pr=args.create_pr, token=args.token,
        max_shard_size=args.max_shard_size, commit_message=args.commit_message,
    )
    if args.output_dir:
        path = Path(args.output_dir, "run_summary.json")
        summary = json.loads(path.read_text()) if path.is_file() else {}
        summary["push"] = result.to_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2))
    logger.info("Pushed: %s", result.pr_url or result.commit_url)
    return 0
