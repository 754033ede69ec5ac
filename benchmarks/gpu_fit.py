"""GPU speed of the fit loop: images/s, share of time per phase, achieved TFLOP/s.

Surrogates are randomly initialised (weights do not matter for speed):
  * CLIP ViT-B/32 vision tower (transformers ``CLIPVisionModelWithProjection``, 224 px);
  * a ResNet-50 vision tower. transformers has no CLIP "ModifiedResNet" (attention-pool
    RN50), so we time transformers' ResNet-50 (torchvision layout) at 224 px, which has the
    same convolutional trunk; the attention pool is a small share of CLIP RN50's FLOPs.

    python benchmarks/gpu_fit.py                 # full size, one GPU, < 8 minutes on an H100
    python benchmarks/gpu_fit.py --tiny          # CPU smoke test at a tiny size (used by the tests)

Writes ``benchmarks/results/gpu_fit.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from uc_datasets import UnlearnableClusters, __version__
from uc_datasets.core.surrogates import load_surrogate
from uc_datasets.methods.uc.config import UCConfig
from uc_datasets.methods.uc.training import PerturbationBank, feature_loss

logger = logging.getLogger("gpu_fit")

#: Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by device-name fragment.
BF16_PEAK = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
             "A10G": 70.0, "L4": 121.0}


def bf16_peak(name: str) -> float | None:
    for key, val in BF16_PEAK.items():
        if key in name:
            return val
    return None


def build_surrogate(kind: str, path: Path, tiny: bool) -> str:
    import transformers as tf

    torch.manual_seed(0)
    size = 32 if tiny else 224
    if kind == "clip-vit-b32":
        cfg = tf.CLIPVisionConfig(image_size=size, patch_size=8 if tiny else 32, projection_dim=16 if tiny else 512,
                                  **(dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                          num_attention_heads=4) if tiny else {}))
        model, proc = tf.CLIPVisionModelWithProjection(cfg), tf.CLIPImageProcessor(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    elif kind == "resnet50":
        cfg = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="bottleneck") if tiny \
            else tf.ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3])
        model, proc = tf.ResNetModel(cfg), tf.ConvNextImageProcessor(size={"shortest_edge": size})
    else:
        raise ValueError(kind)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


def synthetic_dataset(n: int, size: int) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    return datasets.Dataset.from_dict({"image": imgs}).cast_column("image", datasets.Image())


def flops_per_image(surrogate, cfg: UCConfig, hw: tuple[int, int], device: torch.device, batch: int) -> dict:
    """FLOPs of one training step's surrogate fwd+bwd (per image) and generator work (per step)."""
    from torch.utils.flop_counter import FlopCounterMode

    bank = PerturbationBank(hw, cfg).to(device)
    x = torch.rand(batch, 3, *hw, device=device)
    t = torch.randn(batch, surrogate.embed_dim, device=device)
    with FlopCounterMode(display=False) as fc:
        d = bank()
        xp = (x + d[torch.arange(batch, device=device) % cfg.n_clusters]).clamp(0, 1)
        feature_loss(surrogate(xp), t, cfg.loss).sum().backward()
    total = fc.get_total_flops()
    with FlopCounterMode(display=False) as fg:
        bank().sum().backward()
    gen = fg.get_total_flops()
    return {"surrogate_fwd_bwd_per_image": (total - gen) / batch, "generators_per_step": gen}


def run(kind: str, args, device: torch.device, accelerator) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        name = build_surrogate(kind, Path(tmp) / kind, args.tiny)
        ds = synthetic_dataset(args.images, args.image_size)
        uc = UnlearnableClusters(surrogate=name, n_clusters=args.clusters, epochs=args.epochs,
                                 batch_size=args.batch_size, feature_batch_size=args.batch_size,
                                 ngf=8 if args.tiny else 64, n_blocks=1 if args.tiny else 6, progress=not args.quiet,
                                 channels_last=(device.type == "cuda" and kind == "resnet50"))
        t0 = time.perf_counter()
        prot = uc.fit(ds, accelerator=accelerator, num_workers=args.num_workers)
        wall = time.perf_counter() - t0
        stats = prot.metadata["stats"]
        phases = dict(stats["seconds"])
        phases["load_and_decode"] = max(0.0, wall - sum(phases.values()))
        sur = load_surrogate(name).to(device)
        flops = flops_per_image(sur, prot.config, tuple(stats["working_hw"]), device, batch=min(8, args.batch_size))
        steps = args.epochs * int(np.ceil(args.images / args.batch_size))
        train_flops = flops["surrogate_fwd_bwd_per_image"] * args.images * args.epochs \
            + flops["generators_per_step"] * steps
        tflops = train_flops / phases["train"] / 1e12
        peak = bf16_peak(torch.cuda.get_device_name()) if device.type == "cuda" else None
        return {
            "surrogate": kind,
            "images": args.images,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "fit_wall_seconds": wall,
            "fit_images_per_second": args.images * args.epochs / phases["train"],
            "surrogate_fwd_images_per_second": stats["surrogate_fwd_images_per_second"],
            "phase_share": {k: v / wall for k, v in phases.items()},
            "phase_seconds": phases,
            "surrogate_gflop_fwd_bwd_per_image": flops["surrogate_fwd_bwd_per_image"] / 1e9,
            "generator_gflop_per_step": flops["generators_per_step"] / 1e9,
            "achieved_tflops": tflops,
            "bf16_peak_tflops": peak,
            "fraction_of_peak": (tflops / peak) if peak else None,
            "peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="CPU smoke-test size")
    p.add_argument("--surrogates", nargs="+", default=["clip-vit-b32", "resnet50"])
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "gpu_fit.json"))
    args = p.parse_args(argv)
    tiny = args.tiny
    args.images = args.images or (24 if tiny else 2560)
    args.image_size = args.image_size or (32 if tiny else 224)
    args.epochs = args.epochs or (1 if tiny else 3)
    args.batch_size = args.batch_size or (8 if tiny else 256)
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    mp = args.mixed_precision or ("bf16" if cuda else "no")
    accelerator = Accelerator(mixed_precision=mp, cpu=not cuda)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    logging.basicConfig(level=logging.INFO)
    device = accelerator.device
    results = {
        "uc_datasets_version": __version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "mixed_precision": mp,
        "date": time.strftime("%Y-%m-%d"),
        "runs": [run(kind, args, device, accelerator) for kind in args.surrogates],
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for r in results["runs"]:
        logger.info("%s: %.0f img/s fit loop, %.1f TFLOP/s (%s of bf16 peak), phases %s", r["surrogate"],
                    r["fit_images_per_second"], r["achieved_tflops"],
                    f"{r['fraction_of_peak']:.1%}" if r["fraction_of_peak"] else "n/a",
                    {k: f"{v:.0%}" for k, v in r["phase_share"].items()})
    return results


if __name__ == "__main__":
    main()
