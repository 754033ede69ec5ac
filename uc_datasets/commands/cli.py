"""``uc-datasets``: protect, verify, push, evaluate and demo from the command line."""

from __future__ import annotations

import argparse
import ast
import json
import logging
import re
import sys
import time
import traceback

from uc_datasets import __version__
from uc_datasets.commands.arguments import add_source_arguments, epsilon_levels, source_options
from uc_datasets.core.config import config_choices, config_default, epsilon_from_levels
from uc_datasets.methods.uc.config import DEFAULT_LR, DEFAULT_SURROGATE, LABEL_AWARE_DEFAULTS, UCConfig

logger = logging.getLogger("uc_datasets")

#: The embedded default of ``uc-datasets demo``: offline, under 5 minutes on 2 cores.
DEMO_DEFAULTS = dict(source="fashion-mnist", split="train", max_samples=2000, surrogate="efficientnet-lite0",
                     surrogate_image_size=64, n_clusters=10, epochs=5, batch_size=250,
                     output_dir="uc_output/demo")


#: Subcommands whose arguments come from heavier modules; added only when that command is run.
_LAZY_COMMANDS = ("push", "evaluate")


def _choice_option(p: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """``--name`` with the choices of the :class:`UCConfig` field ``name`` (the config owns them)."""
    p.add_argument("--" + name.replace("_", "-"), choices=list(config_choices(UCConfig, name)), **kwargs)


def method_key(args: argparse.Namespace) -> str:
    """The registry key of ``--method`` (``ValueError`` listing the methods for a wrong name: exit 2)."""
    from uc_datasets.registry import get_method

    return get_method(getattr(args, "method", "uc")).name


def _uc_default(name: str) -> object:
    return config_default(UCConfig, name)


def add_fit_arguments(p: argparse.ArgumentParser, defaults: dict | None = None) -> None:
    """Arguments shared by ``protect``, ``demo`` and ``recipes/protect.py``.

    The fit options' defaults are :class:`UCConfig`'s (``defaults`` overrides them, as ``demo`` does).
    """
    d = {"source": None, "split": "train", "max_samples": None, "output_dir": "uc_output",
         **{name: _uc_default(name) for name in ("surrogate_image_size", "n_clusters", "epochs", "batch_size",
                                                  "working_size", "seed")},
         "surrogate": None, **(defaults or {})}
    if d["source"] is None:
        p.add_argument("source", help="Hub dataset id, a save_to_disk directory, an image folder, or 'fashion-mnist'")
    else:
        p.add_argument("source", nargs="?", default=d["source"], help=f"dataset (default: {d['source']})")
    p.add_argument("--split", default=d["split"], help="split to protect (default: %(default)s)")
    p.add_argument("--image-column", default="image", help="image column (default: %(default)s)")
    p.add_argument("--max-samples", type=int, default=d["max_samples"], help="protect only the first N rows")
    p.add_argument("--surrogate", default=d["surrogate"],
                   help="transformers vision model (Hub id or path) or 'efficientnet-lite0' (default: "
                        f"{d['surrogate'] or f'{DEFAULT_SURROGATE} for uc, efficientnet-lite0 for the baselines'})")
    p.add_argument("--surrogate-image-size", type=int, default=d["surrogate_image_size"],
                   help="override the surrogate's input size (faster on CPU)")
    p.add_argument("--n-clusters", type=int, default=d["n_clusters"], help="p, the number of clusters "
                                                                           "(default: %(default)s)")
    p.add_argument("--epsilon", type=epsilon_levels, default=float(round(_uc_default("epsilon") * 255)),
                   help="L-inf bound in uint8 levels, 1..255, e.g. 16 for 16/255 (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="training epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="training batch (default: %(default)s)")
    p.add_argument("--lr", type=float, default=_uc_default("lr"),
                   help="learning rate (default: " + ", ".join(f"{v:g} {k}" for k, v in DEFAULT_LR.items()) + ")")
    for name in ("loss", "train_on", "parametrization", "permutation"):
        _choice_option(p, name, default=_uc_default(name), help="(default: %(default)s)")
    p.add_argument("--working-size", type=int, default=d["working_size"],
                   help="perturbation size when images differ in size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"], help="(default: %(default)s)")
    p.add_argument("--method", default="uc",
                   help="uc (default) or a baseline of uc_datasets.registry.METHODS (a wrong name lists them)")
    p.add_argument("--label-column", default=None,
                   help="uc: label-aware mode, keys nested in this column's classes; baselines: label-consistent "
                        "mode (this column instead of the surrogate's predicted classes)")
    _choice_option(p, "pattern", default=None,
                   help=f"uc: perturbation family (default: {_uc_default('pattern')}; with --label-column, the "
                        "label-aware default LABEL_AWARE_DEFAULTS; see uc_datasets.methods.uc.patterns)")
    p.add_argument("--period", type=int, default=None,
                   help=f"uc: tile period / block size in pixels (default: {_uc_default('period')})")
    p.add_argument("--levels", type=int, nargs="*", default=None,
                   help="uc, model-free patterns: coarser key levels (numbers of groups), e.g. --levels 5 2")
    p.add_argument("--name-encoder", default=None,
                   help="uc, label-aware --levels from class names: the text encoder grouping them, a Hub id, a "
                        f"local path or 'offline' (packaged MiniLM; default: {_uc_default('name_encoder')}, needs "
                        "the Hub)")
    _choice_option(p, "augment_mode", default=None,
                   help=f"uc, trained patterns: reference crop or per-image shifts and flips (default: "
                        f"{_uc_default('augment_mode')})")
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra keyword of the method, e.g. --method-arg steps=10 (repeatable)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--output-dir", default=d["output_dir"], help="where to write (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the protected/ and protector/ of an earlier run in --output-dir (refused without)")
    add_source_arguments(p, applies_to="SOURCE")


def uc_kwargs_from_args(args: argparse.Namespace) -> dict:
    """The fit keywords of parsed fit arguments: UnlearnableClusters', or a baseline's.

    For a baseline (``--method``), only the options it accepts are forwarded, plus its
    ``--method-arg KEY=VALUE`` extras.
    """
    kwargs = _uc_kwargs(args)
    extra = {}
    for item in getattr(args, "method_arg", []):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--method-arg expects KEY=VALUE, got {item!r}")
        try:
            extra[key.replace("-", "_")] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            extra[key.replace("-", "_")] = value
    from uc_datasets.registry import method_arguments

    method = method_key(args)
    accepted = set(method_arguments(method))
    kwargs = {k: v for k, v in kwargs.items() if k in accepted and v is not None}
    kwargs = {**kwargs, **extra}
    if method == "uc" and getattr(args, "label_column", None) and "pattern" not in kwargs:
        kwargs = {**LABEL_AWARE_DEFAULTS, **kwargs}  # label-aware without --pattern: the screens' default family
    return kwargs


def _uc_kwargs(args: argparse.Namespace) -> dict:
    from uc_datasets.registry import get_method

    surrogate = args.surrogate or get_method(method_key(args)).default_surrogate
    return dict(surrogate=surrogate, surrogate_image_size=args.surrogate_image_size,
                n_clusters=args.n_clusters, epsilon=epsilon_from_levels(args.epsilon), epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr, loss=args.loss, train_on=args.train_on,
                parametrization=args.parametrization, permutation=args.permutation,
                working_size=args.working_size, seed=args.seed, device=args.device,
                **{k: (tuple(v) if k == "levels" else v) for k in ("pattern", "period", "levels", "augment_mode", "name_encoder")
                   if (v := getattr(args, k, None)) is not None})


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """Extra arguments of ``recipes/protect.py`` (run under ``accelerate launch``)."""
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=None,
                   help="autocast the surrogate on GPU (default: accelerate's setting, from `accelerate config` or "
                        "`accelerate launch --mixed_precision`; else no)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: %(default)s)")
    p.add_argument("--no-tf32", action="store_true", help="keep full fp32 matmuls on Ampere+ GPUs")
    p.add_argument("--channels-last", choices=["auto", "yes", "no"], default="auto",
                   help="channels_last for convolutional surrogates on GPU (default: %(default)s)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None,
                   help="after verifying, push the protected dataset to this Hub dataset repo (private)")
    p.add_argument("--hub-private", action=argparse.BooleanOptionalAction, default=True,
                   help="make the pushed dataset repo private (default: yes)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an error too")


def run_protect(args: argparse.Namespace, accelerator=None) -> int:
    """Load the dataset, fit, protect, verify and save; optionally push. Used by the CLI and the recipe."""
    import torch

    from uc_datasets.core.sources import load_source
    from uc_datasets.pipeline import protect_dataset

    t0 = time.perf_counter()
    main = accelerator is None or accelerator.is_main_process
    ds = load_source(args.source, split=args.split, **source_options(args))
    if args.max_samples is not None:
        ds = ds.select(range(min(args.max_samples, len(ds))))
    kwargs = uc_kwargs_from_args(args)
    cuda = torch.cuda.is_available() and (accelerator is None or accelerator.device.type == "cuda")
    if cuda and not getattr(args, "no_tf32", False):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cl = getattr(args, "channels_last", "no")
    kwargs["channels_last"] = cl == "yes" or (cl == "auto" and cuda)
    if accelerator is not None:
        kwargs.pop("device", None)
    method = method_key(args)
    from uc_datasets.registry import method_arguments

    if "channels_last" not in method_arguments(method):
        kwargs.pop("channels_last", None)
    out = protect_dataset(ds, args.output_dir, image_column=args.image_column, accelerator=accelerator,
                          resume=getattr(args, "resume", False), overwrite=args.overwrite,
                          num_workers=getattr(args, "num_workers", 0), progress=main, method=method, label_column=getattr(args, "label_column", None), **kwargs)
    if not main:
        return 0
    print(f"\n{out.report.summary()}")
    print(f"protected dataset : {out.protected_dir}   (datasets.load_from_disk)")
    print(f"preview grid      : {out.preview}   (rows: clean / perturbation x{127.5 / args.epsilon:.0f} / protected / "
          "4x zoom clean | protected)")
    print(f"run summary       : {out.summary}")
    print(f"protector (SECRET): {out.protector_dir}   never publish it")
    repo = getattr(args, "push_to_hub", None)
    if repo:
        from uc_datasets.hub import push_protected

        result = push_protected(out.protected, repo, clean=ds, protector=out.protector,
                                image_column=args.image_column, private=args.hub_private, token=args.token)
        summary = json.loads(out.summary.read_text())
        summary["push"] = result.to_dict()
        out.summary.write_text(json.dumps(summary, indent=2))
        print(f"pushed            : {result.pr_url or result.commit_url}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _run_protect(args: argparse.Namespace) -> int:
    return run_protect(args)


def _run_verify(args: argparse.Namespace) -> int:
    from uc_datasets.core.sources import load_source
    from uc_datasets.core.verify import verify

    clean = load_source(args.clean, split=args.split, **source_options(args))
    protected = load_source(args.protected, split=args.split, token=args.token)
    report = verify(clean, protected, epsilon_from_levels(args.epsilon), image_column=args.image_column)
    print(json.dumps(report.to_dict() | {"summary": report.summary()}, indent=2))
    return 0 if report.passed else 1


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``uc-datasets`` parser. ``argv`` decides which lazily built subcommand gets its arguments."""
    parser = argparse.ArgumentParser(prog="uc-datasets", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("protect", help="fit a protector on a dataset split and protect it")
    add_fit_arguments(p)
    p.set_defaults(func=_run_protect)
    p = sub.add_parser("demo", help="protect 2000 Fashion-MNIST images offline with the ImageNet surrogate")
    add_fit_arguments(p, DEMO_DEFAULTS)
    p.set_defaults(func=_run_protect, overwrite=True)  # the demo's own directory: running it again replaces it
    p = sub.add_parser("verify", help="check a protected dataset against its original (exit 1 on failure)")
    p.add_argument("clean")
    p.add_argument("protected")
    p.add_argument("--split", default="train")
    p.add_argument("--image-column", default="image")
    p.add_argument("--epsilon", type=epsilon_levels, default=16.0,
                   help="bound in uint8 levels, 1..255 (default: %(default)s)")
    add_source_arguments(p, applies_to="CLEAN")
    p.set_defaults(func=_run_verify)
    command = next((a for a in (argv or []) if not a.startswith("-")), None)
    p = sub.add_parser("push", help="verify and publish a protected dataset to the Hub (private by default; the "
                                    "protector stays private)")
    if command == "push":  # hub imports datasets and huggingface_hub: only when pushing
        from uc_datasets.commands.push import add_push_arguments, run_push

        add_push_arguments(p)
        p.set_defaults(func=run_push)
    p = sub.add_parser("evaluate", help="play the hacker: relabel, train victims on clean vs protected data")
    if command == "evaluate":  # evaluation imports torch, transformers and accelerate: only when evaluating
        from uc_datasets.commands.evaluate import add_evaluate_arguments

        add_evaluate_arguments(p)
        p.set_defaults(func=_run_evaluate)
    return parser


def _run_evaluate(args: argparse.Namespace) -> int:
    from uc_datasets.commands.evaluate import run_evaluate

    run_evaluate(args)
    return 0


EXIT_CODES = """exit codes: 0 done; 1 a check failed (verification, a refused leak or public protector);
2 bad usage or input (arguments, columns, files, Hub access). Errors print one line; -v shows the traceback."""


def exit_code(err: BaseException) -> int:
    """1 for a failed check (an exception with ``exit_code = 1``), 2 for anything else."""
    return int(getattr(err, "exit_code", 2))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``uc-datasets`` command; returns the exit code (see ``EXIT_CODES``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    quiet_noisy_loggers()
    try:
        return args.func(args)
    except Exception as err:
        return report_error(err, verbose=args.verbose)


def quiet_noisy_loggers() -> None:
    """The HTTP and file-lock libraries log every request at INFO: keep them to warnings."""
    for noisy in ("httpx", "urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def report_error(err: BaseException, *, verbose: bool = False, prog: str = "uc-datasets") -> int:
    """Print ``err`` as the commands do and return its exit code (``EXIT_CODES``).

    One ``error:`` line on stderr (plus a ``hint:`` where one helps); ``verbose`` prints the
    traceback first, with the same exit code. ``uc-datasets`` and ``recipes/protect.py`` use it.

    Example:
        >>> report_error(ValueError("the dataset is empty"))  # doctest: +SKIP
        2
    """
    if verbose:
        traceback.print_exception(type(err), err, err.__traceback__)
    message = option_names(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))
    print(f"error: {message or type(err).__name__}", file=sys.stderr)
    if "\nhint: " in message:
        pass  # the error carries its own hint
    elif type(err).__name__.startswith(("HfHubHTTPError", "RepositoryNotFound", "GatedRepo")) or \
            "401" in message.split("\n")[0]:
        from uc_datasets.core.protector_hub import HUB_TOKEN_HINT

        print(f"hint: {HUB_TOKEN_HINT}", file=sys.stderr)
    elif exit_code(err) == 2 and not verbose and not isinstance(err, (ValueError, KeyError, TypeError, OSError)):
        print(f"hint: {prog} -v ... shows the traceback", file=sys.stderr)
    return exit_code(err)


#: Keywords of the Python API that error messages name, and the command-line options that set them.
_OPTIONS = {**{name: "--" + name.replace("_", "-") for name in (
    "image_column", "label_column", "name_encoder", "class_names", "n_clusters", "period", "overwrite", "output_dir",
    "revision", "data_dir", "data_files")}, "name": "--config-name"}


def option_names(message: str) -> str:
    """An error message with the Python keywords it names (``image_column=...``) spelled as options.

    ``keyword=None`` becomes "leave out --option" and ``keyword=True`` the flag alone.

    Example:
        >>> option_names("Pass image_column=... naming the image column, or name_encoder='offline'.")
        "Pass --image-column ... naming the image column, or --name-encoder 'offline'."
        >>> option_names("the encoder 'x' (name_encoder) cannot be loaded")
        "the encoder 'x' (--name-encoder) cannot be loaded"
        >>> option_names("Pass label_column=... or label_column=None for label-agnostic mode; or overwrite=True.")
        'Pass --label-column ... or leave out --label-column for label-agnostic mode; or --overwrite.'
    """
    names = "|".join(_OPTIONS)
    message = re.sub(r"\((" + names + r")\)", lambda m: f"({_OPTIONS[m.group(1)]})", message)
    message = re.sub(r"\b(" + names + r")=None\b", lambda m: f"leave out {_OPTIONS[m.group(1)]}", message)
    message = re.sub(r"\b(" + names + r")=True\b", lambda m: _OPTIONS[m.group(1)], message)
    return re.sub(r"\b(" + names + r")=", lambda m: _OPTIONS[m.group(1)] + " ", message)


if __name__ == "__main__":
    sys.exit(main())
