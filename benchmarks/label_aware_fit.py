"""The cost of the label-aware default fit (issue 28 §1): seconds per phase at N images.

``UnlearnableClusters(**LABEL_AWARE_DEFAULTS).fit(ds, label_column="label")`` on the first N
balanced Fashion-MNIST training images; the same script, run with ``PYTHONPATH`` pointing at an
older checkout, times the code before a change (it uses only the public API).

    python benchmarks/label_aware_fit.py --n 2000 --surrogate efficientnet-lite0 --output fit.json
"""

from __future__ import annotations

import argparse
import time

import _common


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="training images (balanced over the 10 classes)")
    p.add_argument("--surrogate", default=None, help="default: the library's (openai/clip-vit-base-patch32)")
    p.add_argument("--name-encoder", default="offline",
                   help="class-name encoder of the default's coarser levels (offline: the packaged MiniLM)")
    p.add_argument("--smoke", action="store_true", help="a few crafting rounds (the plumbing only, for the tests)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default=str(_common.RESULTS_DIR / "label_aware_fit.json"))
    args = p.parse_args(argv)
    _common.setup(args.threads)
    import uc_datasets
    from uc_datasets import UnlearnableClusters
    from uc_datasets.methods.uc.config import LABEL_AWARE_DEFAULTS

    ds = _common.load_balanced_fashion_mnist("train", args.n)
    from _workload import fit_settings

    settings = dict(fit_settings(LABEL_AWARE_DEFAULTS, "smoke" if args.smoke else "cpu"), progress=False,
                    name_encoder=args.name_encoder)
    if args.surrogate:
        settings["surrogate"] = args.surrogate
    t0 = time.perf_counter()
    prot = UnlearnableClusters(**settings).fit(ds, label_column="label")
    seconds = time.perf_counter() - t0
    result = {"config": {**_common.run_record(), "n_images": len(ds), "settings": {k: v for k, v in settings.items()},
                         "uc_datasets_file": uc_datasets.__file__},
              "fit_seconds": seconds, "phase_seconds": prot.metadata["stats"]["seconds"],
              "surrogate": prot.surrogate_info.get("name")}
    _common.write_json(args.output, result)
    print(f"{len(ds)} images: fit {seconds:.1f} s, phases {prot.metadata['stats']['seconds']}")
    return result


if __name__ == "__main__":
    main()
