"""Evaluate a protected dataset label-agnostically (the paper's Sec. 4.2 / Figure 4a).

For the original labels and each BERT + K-means relabelling into n groups, train victims on
the clean and on the protected train split and test both on the clean test split.

    accelerate launch recipes/evaluate_protection.py --clean CLEAN_DIR --protected PROTECTED_DIR \
        --victims resnet18 --defenses none mixup --epochs 90 --output-dir uc_output/evaluate
    python recipes/evaluate_protection.py --clean CLEAN_DIR --protected PROTECTED_DIR --encoder offline \
        --width 0.25 --epochs 10 --n-range 5 9          # a small CPU run, no network

Writes results.json, results.md and accuracy_vs_n.png under --output-dir.
"""

import argparse
import logging

from uc_datasets.commands.evaluate import add_evaluate_arguments, run_evaluate


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
