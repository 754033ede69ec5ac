"""Fit a protector and protect a dataset on one or many GPUs/machines with accelerate.

    python recipes/protect.py fashion-mnist --surrogate efficientnet-lite0 --output-dir out
    accelerate launch recipes/protect.py timm/oxford-iiit-pet --surrogate openai/clip-vit-base-patch32 \
        --mixed-precision bf16 --output-dir pets_uc
    accelerate launch recipes/protect.py ... --resume          # after a crash or a kill
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/protect.py ...   # 2 CPU processes

Arguments are those of ``uc-datasets protect`` plus --resume, --mixed-precision (default:
accelerate's own setting), --num-workers, --channels-last, --no-tf32, --push-to-hub and -v.
Errors and exit codes follow ``uc-datasets``: one ``error:`` line, 2 for bad input, 1 for a
failed check; -v adds the traceback.
"""

import argparse
import logging
import sys

from accelerate import Accelerator

from uc_datasets.commands.cli import (
    add_fit_arguments,
    add_recipe_arguments,
    quiet_noisy_loggers,
    report_error,
    run_protect,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fit_arguments(parser)
    add_recipe_arguments(parser)
    args = parser.parse_args(argv)
    try:
        # mixed_precision=None lets accelerate read `accelerate config` / `accelerate launch --mixed_precision`.
        accelerator = Accelerator(mixed_precision=args.mixed_precision)
        level = logging.DEBUG if args.verbose else logging.INFO if accelerator.is_main_process else logging.WARNING
        logging.basicConfig(level=level, format=f"%(asctime)s [rank {accelerator.process_index}] %(levelname)s "
                                                "%(name)s: %(message)s")
        quiet_noisy_loggers()
        return run_protect(args, accelerator)
    except Exception as err:
        return report_error(err, verbose=args.verbose, prog="recipes/protect.py")


if __name__ == "__main__":
    sys.exit(main())
