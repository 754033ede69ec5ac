"""Evaluate a protected dataset label-agnostically (the paper's Sec. 4.2 / Figure 4a).

For the original labels and each BERT + K-means relabelling into n groups, train victims on
the clean and on the protected train split and test both on the clean test split.

    accelerate launch recipes/evaluate_protection.py --clean CLEAN_DIR --protected PROTECTED_DIR \
        --victims resnet18 --defenses none mixup --epochs 90 --output-dir uc_output/evaluate
    python recipes/evaluate_protection.py --clean CLEAN_DIR --protected PROTECTED_DIR --encoder offline \
        --width 0.25 --epochs 10 --n-range 5 9          # a small CPU run, no network

Writes results.json, results.md and accuracy_vs_n.png under --output-dir. Errors and exit
codes follow ``uc-datasets``: one ``error:`` line, 2 for bad input; -v adds the traceback.
"""

import argparse
import logging
import sys

from uc_datasets.commands.cli import quiet_noisy_loggers, report_error
from uc_datasets.commands.evaluate import add_evaluate_arguments, run_evaluate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_evaluate_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an error too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_noisy_loggers()
    try:
        results = run_evaluate(args)
    except Exception as err:
        return report_error(err, verbose=args.verbose, prog="recipes/evaluate_protection.py")
    for name, path in results["outputs"].items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
