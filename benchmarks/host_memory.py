"""Evaluation training steps with and without ``keeping_freed_memory`` (bench/host_memory.py), side by side.

Each measurement runs in a fresh process (a process's allocator state carries over from earlier steps), alternating
off/on so that a busy machine slows both alike. One step is what protocol A does per epoch on an IPC-10 set:
100 images, DC's augmentation, ConvNet-3 forward and backward, SGD. Stand-in data of the dataset's shape
(timing does not depend on the pixels).

    python -m benchmarks.host_memory --dataset mnist --threads 1 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(dataset: str, keep: bool, steps: int, threads: int) -> float:
    """Milliseconds per training step in this process."""
    import torch

    from bench.core.host_memory import keeping_freed_memory
    from bench.data.augment import DCAugment
    from bench.learning.evaluation import network_factory
    from bench.learning.training import build_net, train_epoch
    from benchmarks.inner_loop import stand_in

    torch.set_num_threads(threads)
    data = stand_in(dataset, 10)
    net = build_net(network_factory("ConvNet-3", data), 0, torch.device("cpu"))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    gen, aug = torch.Generator().manual_seed(0), DCAugment()

    def run(n: int) -> None:
        for _ in range(n):
            train_epoch(
                net,
                opt,
                data.train_images,
                data.train_labels,
                batch_size=256,
                to_input=data.normalize,
                gen=gen,
                aug=aug,
            )

    with keeping_freed_memory() if keep else contextlib.nullcontext():
        run(3)
        start = time.perf_counter()
        run(steps)
        return (time.perf_counter() - start) / steps * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, each in fresh processes")
    parser.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(args.dataset, args.child == "on", args.steps, args.threads))
        return 0
    from bench.core.version import machine_label

    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in times:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.host_memory",
                    "--child",
                    mode,
                    "--dataset",
                    args.dataset,
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            ).stdout
            times[mode].append(float(out.split()[-1]))
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(
        json.dumps(
            {
                "machine": machine_label(),
                "dataset_shape": args.dataset,
                "threads": args.threads,
                "ms_per_step": {k: [round(t, 1) for t in v] for k, v in times.items()},
                "median_off_ms": round(off, 1),
                "median_on_ms": round(on, 1),
                "speedup": round(off / on, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
