"""Evaluate a protected dataset label-agnostically (the paper's Sec. 4.2 / Figure 4a).

For the original labels and each BERT + K-means relabelling into n groups, train victims on
the clean and on the protected train split and test both on the clean test split.

    accelerate launch recipes/evaluate.py --clean CLEAN_DIR --protected PROTECTED_DIR \
        --victims resnet18 --defenses none mixup --epochs 90 --output-dir uc_output/evaluate
    python recipes/evaluate.py --clean CLEAN_DIR --protected PROTECTED_DIR --encoder offline \
        --width 0.25 --epochs 10 --n-range 5 9          # a small CPU run, no network

Writes results.json, results.md and accuracy_vs_n.png under --output-dir.
"""

import argparse
import logging
import os
import sys

# This file is named like the `evaluate` package: drop its folder from the import path so that
# `import evaluate` inside uc_datasets finds the package, not this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from uc_datasets.evaluation import add_evaluate_arguments, run_evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_evaluate_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = run_evaluate(args)
    for name, path in results["outputs"].items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
