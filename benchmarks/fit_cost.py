"""Fit cost against the number of clusters p, for every perturbation family.

Fits ``UnlearnableClusters`` on the same balanced Fashion-MNIST images (EfficientNet-Lite0
surrogate at 64 px, batch 100, one epoch) for each family and each p, and reports the fit's
phases (features, K-means, training) and the training seconds per epoch relative to p = 10.
The issue asked that a family's fit cost stay roughly flat in p; this measures whether it does.

    python benchmarks/fit_cost.py --profile cpu --threads 1   # a few minutes
    python benchmarks/fit_cost.py --profile smoke             # seconds (used by the tests)

Writes ``benchmarks/results/fit_cost.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import time

import _common

logger = logging.getLogger("fit_cost")

FAMILIES = ("generator", "periodic-generator", "tile", "ar", "block")
PROFILES = {
    "smoke": {"n_images": 40, "ps": (2, 4), "image_size": 32, "batch_size": 20, "ngf": 8, "n_blocks": 1,
              "generator_ps": (2, 4)},
    # the full-image generator has 7.8 M parameters per cluster at ngf 64: p = 100 would need
    # ~12 GB for weights and Adam states on this 24 GB machine, so it is measured up to p = 50.
    "cpu": {"n_images": 400, "ps": (10, 50, 100), "image_size": 64, "batch_size": 100, "ngf": 64, "n_blocks": 6,
            "generator_ps": (10, 50)},
}


def measure(family: str, p: int, ds, prof: dict) -> dict:
    """One fit (one epoch) of ``family`` with ``p`` clusters; its phase seconds."""
    from uc_datasets import UnlearnableClusters

    uc = UnlearnableClusters(surrogate="efficientnet-lite0", surrogate_image_size=prof["image_size"], n_clusters=p,
                             epochs=1, batch_size=prof["batch_size"], ngf=prof["ngf"], n_blocks=prof["n_blocks"],
                             pattern=family, progress=False)
    t0 = time.perf_counter()
    prot = uc.fit(ds)
    total = time.perf_counter() - t0
    sec = prot.metadata["stats"]["seconds"]
    return {"family": family, "p": p, "fit_seconds": total, "train_seconds": sec["train"],
            "features_seconds": sec["features"], "kmeans_seconds": sec["kmeans"],
            "loss_points": sum(len(curve) for curve in prot.metadata["loss_curves"])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default=str(_common.RESULTS_DIR / "fit_cost.json"))
    args = p.parse_args(argv)
    _common.setup(args.threads)
    prof = PROFILES[args.profile]
    ds = _common.load_balanced_fashion_mnist("train", prof["n_images"])
    from uc_datasets import UnlearnableClusters

    UnlearnableClusters(surrogate="efficientnet-lite0", surrogate_image_size=32, n_clusters=2, epochs=1,
                        batch_size=10, ngf=8, n_blocks=1, progress=False).fit(ds.select(range(20)))  # warm-up
    rows = []
    for family in FAMILIES:
        for n in prof["generator_ps"] if family == "generator" else prof["ps"]:
            rows.append(measure(family, n, ds, prof))
            logger.info("%s p=%d: %s", family, n, {k: round(v, 2) for k, v in rows[-1].items() if k.endswith("s")})
    base = {r["family"]: r for r in rows if r["p"] == prof["ps"][0]}
    for r in rows:
        b = base[r["family"]]
        r["fit_vs_first_p"] = r["fit_seconds"] / b["fit_seconds"]
    payload = {"config": {**_common.run_record(), "profile": args.profile, **prof}, "rows": rows}
    _common.write_json(args.output, payload)
    print(_common.markdown_table(
        ["family", "p", "fit s", "training s", "features s", "K-means s", f"fit / fit at p={prof['ps'][0]}"],
        [[r["family"], r["p"], f"{r['fit_seconds']:.1f}", f"{r['train_seconds']:.1f}", f"{r['features_seconds']:.1f}",
          f"{r['kmeans_seconds']:.2f}", f"{r['fit_vs_first_p']:.2f}"] for r in rows]))
    return payload


if __name__ == "__main__":
    main()
