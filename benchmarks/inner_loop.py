"""Seconds per inner loop (paper Table VI) at full CIFAR scale, on stand-in data of CIFAR's shape.

Timing does not depend on image content, so this runs the real presets (IDC: real batch 64; DREAM+: 128
cluster-nearest images re-clustered every 10 steps, warm-up, bidirectional loss) on seeded uniform noise of
CIFAR-10/100 size (50,000 x 3 x 32 x 32). Accuracies from it mean nothing and are not printed.

    python benchmarks/inner_loop.py --dataset cifar10 --methods IDC DREAM+ --iterations 2
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from bench.cell import machine_label
from bench.data import ImageDataset
from bench.dataset_info import dataset_info
from bench.evaluate import network_factory
from methods.base import Budget
from methods.components import create_method

SHAPES = ("cifar10", "cifar100")   # the stand-in data takes these datasets' shape


def stand_in(name: str, per_class: int) -> ImageDataset:
    """Uniform noise with CIFAR's shape, class balance and normalisation constants (timing only)."""
    gen = torch.Generator().manual_seed(0)
    n_classes = dataset_info(name).classes
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    images = torch.rand(len(labels), 3, 32, 32, generator=gen)
    test = torch.rand(1000, 3, 32, 32, generator=gen)
    mean, std = dataset_info(name).stats   # type: ignore[misc]
    return ImageDataset(name, images, labels, test, torch.arange(1000) % n_classes, n_classes, mean, std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=SHAPES, default="cifar10")
    parser.add_argument("--methods", nargs="+", default=["IDC", "DREAM+"])
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=2, help="outer iterations (each = 100 inner loops)")
    parser.add_argument("--steps", type=int, default=None, help="inner loops per network (default: the preset's 100)")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: full CIFAR)")
    args = parser.parse_args()
    per_class = args.per_class or 50000 // dataset_info(args.dataset).classes
    data = stand_in(args.dataset, per_class)
    make = network_factory("ConvNet-3", data)
    for name in args.methods:
        method = create_method(name, args.dataset, args.ipc)
        start = time.perf_counter()
        budget = Budget(iterations=args.iterations, steps_per_network=args.steps)
        s = method.distill(data, args.ipc, make, budget, seed=0)
        wall = time.perf_counter() - start
        loops = args.iterations * method.config.with_budget(budget).steps_per_network
        t = s.timings
        row = {"dataset": args.dataset, "method": name, "ipc": args.ipc, "machine": machine_label(), "data": "noise stand-in",
               "inner_loops": loops, "clustering_s": t.get("clustering", 0.0) / loops,
               "image_update_s": t.get("image_update", 0.0) / loops,
               "inner_loop_s": (t.get("clustering", 0.0) + t.get("image_update", 0.0)) / loops,
               "net_update_s": t.get("net_update", 0.0) / loops, "warmup_s_per_network": t.get("warmup", 0.0) / args.iterations,
               "wall_s": wall}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
