"""Seconds per inner loop (paper Table VI) at full scale, on stand-in data of MNIST's or CIFAR's shape.

Timing does not depend on image content, so this runs the real presets (IDC: real batch 64; DREAM+: 128
cluster-nearest images re-clustered every 10 steps, warm-up, bidirectional loss) on seeded uniform noise of
the dataset's size (MNIST: 60,000 x 1 x 28 x 28; CIFAR: 50,000 x 3 x 32 x 32). Accuracies from it mean nothing.

    python benchmarks/inner_loop.py --dataset cifar10 --methods IDC DREAM+ --iterations 2
    python benchmarks/inner_loop.py --dataset cifar10 --methods DM --iterations 200 --batch-classes both
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bench.core.version import machine_label
from bench.data.info import dataset_info
from bench.data.loaders import ImageDataset
from bench.learning.evaluation import network_factory
from methods.base import Budget
from methods.components import create_method

SHAPES = ("mnist", "cifar10", "cifar100")  # the stand-in data takes these datasets' shape


def stand_in(name: str, per_class: int) -> ImageDataset:
    """Uniform noise with the dataset's shape, class balance and normalisation constants (timing only)."""
    gen = torch.Generator().manual_seed(0)
    info = dataset_info(name)
    n_classes, shape = info.classes, (info.channels, info.image_size, info.image_size)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    images = torch.rand(len(labels), *shape, generator=gen)
    test = torch.rand(1000, *shape, generator=gen)
    mean, std = info.stats  # type: ignore[misc]
    return ImageDataset(name, images, labels, test, torch.arange(1000) % n_classes, n_classes, mean, std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=SHAPES, default="cifar10")
    parser.add_argument("--methods", nargs="+", default=["IDC", "DREAM+"])
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=2, help="outer iterations (each = 100 inner loops)")
    parser.add_argument("--steps", type=int, default=None, help="inner loops per network (default: the preset's 100)")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: full CIFAR)")
    parser.add_argument(
        "--batch-classes",
        choices=["auto", "on", "off", "both"],
        default="auto",
        help="all classes in one pass (vmap over classes for gradient matching); 'both' times each, same run",
    )
    parser.add_argument(
        "--levers",
        choices=["default", "both"],
        default="default",
        help="'both': also time each run with cudnn.benchmark and TF32 matmuls on (GPU levers)",
    )
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "both"],
        default="float32",
        help="arithmetic of the network passes ('both' times float32 and the opt-in bf16 autocast)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed inner loops per path before timing (CUDA context, kernel caches), 0 for none",
    )
    args = parser.parse_args()
    per_class = args.per_class or (60000 if args.dataset == "mnist" else 50000) // dataset_info(args.dataset).classes
    data = stand_in(args.dataset, per_class)
    make = network_factory("ConvNet-3", data)
    modes = {"auto": [None], "on": [True], "off": [False], "both": [False, True]}[args.batch_classes]
    levers = [False, True] if args.levers == "both" else [False]
    precisions = ["float32", "bfloat16"] if args.precision == "both" else [args.precision]
    for name, batch_classes, precision in (
        (n, b, p) for n in args.methods for b in modes for p in precisions if args.warmup
    ):
        warm = create_method(name, args.dataset, args.ipc, {"precision": precision})  # no timed run pays a cold start
        warm.distill(
            data,
            args.ipc,
            make,
            Budget(iterations=1, steps_per_network=args.warmup),
            seed=0,
            batch_classes=batch_classes,
        )
    runs = ((n, b, v, p) for n in args.methods for b in modes for v in levers for p in precisions)
    for name, batch_classes, lever, precision in runs:
        torch.backends.cudnn.benchmark = lever
        torch.backends.cuda.matmul.allow_tf32 = lever
        method = create_method(name, args.dataset, args.ipc, {"precision": precision})
        start = time.perf_counter()
        budget = Budget(iterations=args.iterations, steps_per_network=args.steps)
        s = method.distill(data, args.ipc, make, budget, seed=0, batch_classes=batch_classes, sync_timing=True)
        wall = time.perf_counter() - start
        loops = args.iterations * method.config.with_budget(budget).steps_per_network
        t = s.timings
        row = {
            "dataset": args.dataset,
            "method": name,
            "batch_classes": batch_classes,
            "cudnn_benchmark_tf32": lever,
            "precision": precision,
            "ipc": args.ipc,
            "machine": machine_label(),
            "data": "noise stand-in",
            "inner_loops": loops,
            "clustering_s": t.get("clustering", 0.0) / loops,
            "clustering_embed_s": t.get("clustering_embed", 0.0) / loops,
            "image_update_s": t.get("image_update", 0.0) / loops,
            "matching_s": (t.get("clustering", 0.0) + t.get("image_update", 0.0)) / loops,
            "inner_loop_s": (t.get("clustering", 0.0) + t.get("image_update", 0.0) + t.get("net_update", 0.0)) / loops,
            "clustering_share": t.get("clustering", 0.0)
            / max(sum(t.get(k, 0.0) for k in ("clustering", "image_update", "net_update")), 1e-12),
            "net_update_s": t.get("net_update", 0.0) / loops,
            "warmup_s_per_network": t.get("warmup", 0.0) / args.iterations,
            "wall_s": wall,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
