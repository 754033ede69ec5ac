"""``uc-datasets evaluate`` and ``recipes/evaluate_protection.py``: the sweep's options and runner.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_evaluate_arguments(parser)
    >>> args = parser.parse_args(["--clean", "clean_dir", "--protected", "protected_dir", "--epochs", "2"])
    >>> args.victims, args.defenses, args.protected_fraction
    (['resnet18'], ['none'], [1.0])
"""

from __future__ import annotations

import argparse
import datetime
import logging
from dataclasses import asdict
from pathlib import Path

from accelerate import Accelerator

from uc_datasets.commands.arguments import add_source_arguments, source_options
from uc_datasets.core.augment import AUGMENTATIONS
from uc_datasets.core.config import config_default
from uc_datasets.core.models import VICTIMS
from uc_datasets.evaluation.data import MIX_MODES, load_evaluation_data
from uc_datasets.evaluation.defenses import DEFENSES
from uc_datasets.evaluation.relabel import PAPER_N_RANGE, PSEUDO_ENCODERS, default_n_range, validate_n
from uc_datasets.evaluation.reporting import write_outputs
from uc_datasets.evaluation.sweep import STEMS, EvaluationConfig, run_sweep

__all__ = ["add_evaluate_arguments", "run_evaluate"]

logger = logging.getLogger(__name__)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser`` (used by the recipe and ``uc-datasets evaluate``).

    Example:
        >>> p = argparse.ArgumentParser(); add_evaluate_arguments(p)
        >>> p.parse_args(["--clean", "c", "--protected", "p", "--n-range", "5", "9"]).n_range
        [5, 9]
    """
    data = parser.add_argument_group("data")
    data.add_argument("--clean", required=True, help="clean DatasetDict: save_to_disk directory or Hub id (the Hub "
                                                     "options below select its config, revision and files)")
    data.add_argument("--protected", required=True,
                      help="protected dataset; its train split is the clean one, perturbed, row by row")
    data.add_argument("--image-column", default="image")
    data.add_argument("--label-column", default="label")
    data.add_argument("--train-split", default="train")
    data.add_argument("--test-split", default="test")
    data.add_argument("--class-names", nargs="+", default=None, metavar="NAME",
                      help="class names in label order (needed when the label column is a plain int)")
    data.add_argument("--image-size", type=int, default=None,
                      help="resize (shorter side) and centre-crop to this size; default: native size")
    data.add_argument("--dataset-name", default=None, help="name in the results (default: the clean source's name)")
    data.add_argument("--method", default=None, help="protection method, if the protected dataset does not record it")
    data.add_argument("--surrogate", default=None, help="surrogate model, if the protected dataset does not record it")

    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--victims", nargs="+", default=_default("victims"), metavar="VICTIM",
                       help=f"victim models: {', '.join(VICTIMS)}")
    sweep.add_argument("--defenses", nargs="+", default=_default("defenses"), metavar="DEFENSE",
                       help=f"training-time defences, one run each: {', '.join(DEFENSES)}; "
                            "parameters as name:key=value,... e.g. pgd:eps=4/255,steps=5")
    sweep.add_argument("--protected-fraction", nargs="+", type=float, default=_default("protected_fractions"),
                       metavar="F",
                       help="fraction(s) of the train set that is protected (the rest stays clean)")
    sweep.add_argument("--mix-by", choices=MIX_MODES, default=_default("mix_by"),
                       help="protect a random fraction of rows, or of whole classes (the paper's Sec. 4.6)")
    sweep.add_argument("--seeds", nargs="+", type=int, default=_default("seeds"), metavar="SEED")
    sweep.add_argument("--n-range", nargs=2, type=int, default=None, metavar=("LOW", "HIGH"),
                       help=f"relabel into n = LOW..HIGH groups (default: {PAPER_N_RANGE[0]}..{PAPER_N_RANGE[1]}, "
                            "clipped to [2, C-1])")
    sweep.add_argument("--n-step", type=int, default=1, help="step between n values")
    sweep.add_argument("--no-original", action="store_true", help="skip the original labels")
    sweep.add_argument("--encoder", default=_default("encoder"),
                       help="class-name encoder: a Hub id (bert-base-uncased), a local path, or 'offline' (MiniLM)")
    sweep.add_argument("--relabel-seed", type=int, default=_default("relabel_seed"),
                       help="K-means seed of the relabelling")
    sweep.add_argument("--pseudo-labels", nargs="+", type=int, default=_default("pseudo_n_values"), metavar="N",
                       help="also train on pseudo-labels: K-means of the hacker's image embeddings into N groups "
                            "(not a function of the class); the test labels are each test image's nearest centre")
    sweep.add_argument("--simclr-epochs", type=int, default=_default("simclr_epochs"), metavar="E",
                       help="also the unsupervised attacker: SimCLR for E epochs on the clean and on the protected "
                            "images, then a linear probe on the clean labelled images (0: off)")
    sweep.add_argument("--simclr-batch-size", type=int, default=_default("simclr_batch_size"))
    sweep.add_argument("--pseudo-encoder", default=_default("pseudo_encoder"),
                       help=f"image encoder for --pseudo-labels: {', '.join(PSEUDO_ENCODERS)} (offline) or a "
                            "surrogate name (Hub id, local path, efficientnet-lite0)")

    training = parser.add_argument_group("victim training")
    for name, kind in (("epochs", int), ("batch_size", int), ("lr", float), ("momentum", float),
                       ("weight_decay", float)):
        training.add_argument("--" + name.replace("_", "-"), type=kind, default=_default(name),
                              help="(default: %(default)s)")
    training.add_argument("--width", type=float, default=_default("width"),
                          help="channel multiplier (e.g. 0.25 for CPU runs; default: %(default)s)")
    training.add_argument("--augment", choices=AUGMENTATIONS, default=_default("augment"),
                          help="random crop (pad 1/8) or random-resized crop, each with horizontal flip")
    training.add_argument("--stem", choices=tuple(STEMS), default=_stem(_default("small_input")),
                          help="auto: small 3x3 stride-1 stem for images of 64 px or less")
    training.add_argument("--evals-per-epoch", type=int, default=_default("evals_per_epoch"), metavar="K",
                          help="the step-resolved peak: test the victims K times an epoch in the first "
                               "--early-epochs epochs and score the best point (default: %(default)s, epoch ends)")
    training.add_argument("--early-epochs", type=int, default=_default("early_epochs"), metavar="E",
                          help="how many first epochs --evals-per-epoch covers (default: %(default)s)")
    add_source_arguments(parser, applies_to="--clean")
    parser.add_argument("--output-dir", default="uc_output/evaluate")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _default(name: str) -> object:
    """The :class:`EvaluationConfig` default of ``name`` (the config owns it; victim training's are
    :class:`~uc_datasets.evaluation.victims.TrainConfig`'s)."""
    return config_default(EvaluationConfig, name)


def _stem(small_input: bool | None) -> str:
    return next(name for name, value in STEMS.items() if value is small_input)


def _n_values(args: argparse.Namespace, num_classes: int) -> list[int] | None:
    if args.n_step < 1:
        raise ValueError(f"--n-step must be >= 1; got {args.n_step}.")
    if args.n_range is None:
        return None if args.n_step == 1 else default_n_range(num_classes)[:: args.n_step]
    low, high = args.n_range
    if low > high:
        raise ValueError(f"--n-range LOW HIGH needs LOW <= HIGH; got {low} {high}.")
    for n in (low, high):
        validate_n(n, num_classes)
    return list(range(low, high + 1, args.n_step))


def _source_name(source: str) -> str:
    return Path(source.rstrip("/\\")).name or source


def run_evaluate(args: argparse.Namespace) -> dict:
    """Run the whole evaluation from parsed arguments and write the outputs (main process).

    Returns ``{"config": ..., "rows": [...], "outputs": {"results_json", "table", "plot"}}``.

    Example:
        >>> p = argparse.ArgumentParser(); add_evaluate_arguments(p)
        >>> args = p.parse_args(["--clean", "clean_dir", "--protected", "protected_dir", "--epochs", "5"])
        >>> results = run_evaluate(args)  # doctest: +SKIP
    """
    # Options are checked before any data is read; what depends on the data is filled in after.
    config = EvaluationConfig(
        victims=args.victims,
        defenses=args.defenses,
        protected_fractions=args.protected_fraction,
        mix_by=args.mix_by,
        seeds=args.seeds,
        include_original=not args.no_original,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        augment=args.augment,
        width=args.width,
        small_input=STEMS[args.stem],
        evals_per_epoch=args.evals_per_epoch,
        early_epochs=args.early_epochs,
        encoder=args.encoder,
        relabel_seed=args.relabel_seed,
        pseudo_n_values=args.pseudo_labels,
        pseudo_encoder=args.pseudo_encoder,
        simclr_epochs=args.simclr_epochs,
        simclr_batch_size=args.simclr_batch_size,
        dataset=args.dataset_name or _source_name(args.clean),
    )
    accelerator = Accelerator()
    data, metadata = load_evaluation_data(
        args.clean,
        args.protected,
        image_column=args.image_column,
        label_column=args.label_column,
        train_split=args.train_split,
        test_split=args.test_split,
        class_names=args.class_names,
        image_size=args.image_size,
        progress=not args.no_progress,
        hub_options=source_options(args),
    )
    config.n_values = _n_values(args, len(data.class_names))
    if config.n_values == [] and not config.include_original and not config.pseudo_n_values:
        raise ValueError("Nothing to evaluate: no n values and --no-original.")
    for key in ("method", "surrogate"):
        cli_value = getattr(args, key)
        if key in metadata and cli_value is not None and cli_value != metadata[key]:
            logger.warning(
                "--%s %r differs from the protected dataset's %r; using the dataset's.", key, cli_value, metadata[key]
            )
        setattr(config, key, metadata.get(key) or cli_value or "unknown")
    logger.info(
        "Evaluating %s: %d train / %d test images at %d px, %d classes; method %s, surrogate %s",
        config.dataset, len(data.train_labels), len(data.test_labels), data.image_size,
        len(data.class_names), config.method, config.surrogate,
    )
    finished: list[dict] = []
    try:
        rows, relabelings = run_sweep(data, config, accelerator=accelerator, progress=not args.no_progress,
                                      rows=finished)
    except Exception as err:
        if finished and accelerator.is_main_process:
            partial = {"config": {**asdict(config), "clean": args.clean, "protected": args.protected,
                                  "incomplete": f"{type(err).__name__}: {err}"}, "rows": finished}
            try:
                written = write_outputs(partial, args.output_dir)["results_json"]
            except Exception:  # the sweep's error matters more than a failed plot of partial rows
                written = str(Path(args.output_dir) / "results.json")
                logger.exception("Writing the partial outputs failed")
            logger.error("The sweep failed after %d finished row(s); they are in %s", len(finished), written)
        raise
    results = {
        "config": {
            **asdict(config),
            "clean": args.clean,
            "protected": args.protected,
            "num_train": len(data.train_labels),
            "num_test": len(data.test_labels),
            "image_size": data.image_size,
            "num_classes": len(data.class_names),
            "class_names": data.class_names,
            "relabelings": relabelings,
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "rows": rows,
    }
    outputs: dict[str, str] = {}
    if accelerator.is_main_process:
        outputs = write_outputs(results, args.output_dir)
        logger.info("Wrote %s", ", ".join(outputs.values()))
    accelerator.wait_for_everyone()
    return {**results, "outputs": outputs}
