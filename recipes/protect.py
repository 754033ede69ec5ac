"""Fit a protector and protect a dataset on one or many GPUs/machines with accelerate.

    python recipes/protect.py fashion-mnist --surrogate efficientnet-lite0 --output-dir out
    accelerate launch recipes/protect.py timm/oxford-iiit-pet --surrogate openai/clip-vit-base-patch32 \
        --mixed-precision bf16 --output-dir pets_uc
    accelerate launch recipes/protect.py ... --resume          # after a crash or a kill
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/protect.py ...   # 2 CPU processes

Arguments are those of ``uc-datasets protect`` plus --resume, --mixed-precision (default:
accelerate's own setting), --num-workers, --channels-last, --no-tf32 and --push-to-hub.
"""

import argparse
import logging
import sys

from accelerate import Accelerator

from uc_datasets.commands.cli import (
    add_fit_arguments,
    add_recipe_arguments,
    run_protect,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fit_arguments(parser)
    add_recipe_arguments(parser)
    args = parser.parse_args(argv)
    # mixed_precision=None lets accelerate read `accelerate config` / `accelerate launch --mixed_precision`.
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format=f"%(asctime)s [rank {accelerator.process_index}] %(levelname)s %(name)s: %(message)s")
    return run_protect(args, accelerator)


if __name__ == "__main__":
    sys.exit(main())
