"""Fit a protector and protect a dataset on one or many GPUs/machines with accelerate.

    python recipes/protect.py fashion-mnist --surrogate efficientnet-lite0 --output-dir out
    accelerate launch recipes/protect.py timm/oxford-iiit-pet --surrogate openai/clip-vit-base-patch32 \
        --mixed-precision bf16 --output-dir pets_uc
    accelerate launch recipes/protect.py ... --resume          # after a crash or a kill
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/protect.py ...   # 2 CPU processes

Arguments are those of ``uc-datasets protect`` plus --resume, --mixed-precision,
--num-workers, --channels-last, --no-tf32 and --push-to-hub.
"""

import argparse
import logging
import sys

from accelerate import Accelerator

from uc_datasets.commands.cli import (
    add_fit_arguments,
    add_recipe_arguments,
    exit_code,
    report_error,
    run_protect,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fit_arguments(parser)
    add_recipe_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an error too")
    args = parser.parse_args(argv)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format=f"%(asctime)s [rank {accelerator.process_index}] %(levelname)s %(name)s: %(message)s")
    try:
        return run_protect(args, accelerator)
    except Exception as err:  # the CLI's convention: one error line, exit 2 for bad input (1 for a failed check)
        return report_error(err, verbose=args.verbose) if accelerator.is_main_process else exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
