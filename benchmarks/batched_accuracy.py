"""Does the all-classes-at-once engine change accuracy? A short run on real data, both paths, same seeds.

Distils one method twice with the same seed, once class by class and once with every class in one pass
(``batch_classes``), then evaluates both sets with the method's published protocol and the same evaluation
seeds. On a CPU the two sets agree to float rounding (tests/test_engine.py); on a GPU, whose kernels are not
bit-deterministic, they drift apart, so this checks that the accuracies stay within evaluation noise.
Prints one JSON line per path and one with the images' largest difference.

    python benchmarks/batched_accuracy.py --data-root ../shared/data --method DREAM+ --ipc 10 --iterations 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from bench.core.version import machine_label
from bench.data.loaders import load_dataset
from bench.learning.evaluation import evaluate_set, network_factory, resolve_protocol
from methods.base import Budget
from methods.components import create_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--method", default="DREAM+")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=4, help="outer iterations (networks)")
    parser.add_argument("--steps", type=int, default=None, help="inner loops per network (default: the preset's)")
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paths", choices=["both", "per-class", "all-classes"], default="both")
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="bfloat16: the opt-in bf16 autocast for both paths (its accuracy effect vs a float32 run)",
    )
    args = parser.parse_args()
    data = load_dataset(args.dataset, args.data_root)
    make = network_factory("ConvNet-3", data)
    budget = Budget(iterations=args.iterations, steps_per_network=args.steps)
    sets = {}
    for batch_classes in {"both": (False, True), "per-class": (False,), "all-classes": (True,)}[args.paths]:
        method = create_method(args.method, args.dataset, args.ipc, {"precision": args.precision})
        start = time.perf_counter()
        distilled = method.distill(data, args.ipc, make, budget, seed=args.seed, batch_classes=batch_classes)
        seconds = time.perf_counter() - start
        images, labels = distilled.decoded()
        sets[batch_classes] = images
        protocol = resolve_protocol(method.eval_protocol, args.dataset, method.factor)
        protocol = dataclasses.replace(protocol, epochs=args.eval_epochs)
        outcome = evaluate_set(images, labels, data, "ConvNet-3", protocol, args.eval_runs, args.seed)
        accs = outcome.accuracies
        print(
            json.dumps(
                {
                    "method": args.method,
                    "dataset": args.dataset,
                    "data": "real",
                    "ipc": args.ipc,
                    "batch_classes": batch_classes,
                    "precision": args.precision,
                    "iterations": args.iterations,
                    "inner_loops": method.inner_loops(budget),
                    "protocol": protocol.name,
                    "eval_epochs": protocol.epochs,
                    "accuracies": accs,
                    "mean": statistics.fmean(accs),
                    "sem": statistics.stdev(accs) / len(accs) ** 0.5 if len(accs) > 1 else None,
                    "distill_s": seconds,
                    "machine": machine_label(),
                    "torch": torch.__version__,
                }
            ),
            flush=True,
        )
    if len(sets) < 2:
        return
    diff = (sets[False] - sets[True]).abs()
    print(json.dumps({"max_abs_image_difference": float(diff.max()), "mean_abs_image_difference": float(diff.mean())}))


if __name__ == "__main__":
    main()
