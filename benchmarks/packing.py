"""Cells per device-hour with several cells sharing one GPU (``--workers N``, the local form of a Slurm job's
``cells_per_gpu``) against one cell at a time.

The same small matrix (one method, ``--cells`` seeds) runs twice into fresh folders through ``bench.cli.run``:
once one cell at a time, once ``--workers`` at a time; each run's wall clock gives cells per hour, and the
records of the two runs are compared (on a GPU they may differ by float non-determinism, so the largest
accuracy difference is reported, not asserted). One JSON line on stdout; the issue's H200 note estimated
~2.8x from four jobs each at ~70% of their solo speed.

    python benchmarks/packing.py --data-root DATA --dataset mnist --method DREAM+ --cells 4 --workers 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def small_matrix(dataset: str, method: str, cells: int, iterations: int, steps: int, eval_epochs: int) -> dict:
    """One cell per seed; a budget of seconds per cell on a GPU, so the run measures sharing, not one long cell."""
    return {
        "name": "packing",
        "datasets": [dataset],
        "ipc": [10],
        "methods": [method],
        "archs": ["ConvNet-3"],
        "seeds": list(range(cells)),
        "profile": "short",
        "profiles": {
            "short": {
                "description": "packing benchmark",
                "defaults": {
                    "iterations": iterations,
                    "steps_per_network": steps,
                    "eval_runs": 1,
                    "eval_epochs": eval_epochs,
                },
            }
        },
    }


def timed_run(matrix: Path, results: Path, data_root: str | None, workers: int) -> float:
    """Wall seconds of ``bench.cli.run`` over the whole matrix (it fails loudly if a cell fails)."""
    cmd = [
        sys.executable,
        "-m",
        "bench.run",
        str(matrix),
        "--results",
        str(results),
        "--no-report",
        "--workers",
        str(workers),
    ]
    if data_root:
        cmd += ["--data-root", data_root]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench.cli.run with {workers} worker(s) failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def records(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(results.glob("packing/short/*/result.json"))}


def cell_seconds(run: dict[str, dict]) -> float:
    """Mean seconds a cell spent distilling and evaluating: with the run's wall clock, it separates a slower cell
    (sharing the GPU) from what surrounds the cells (process start, data loading)."""
    return sum(r["distill_seconds"] + r["eval_seconds"] for r in run.values()) / max(len(run), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--method", default="DREAM+")
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="inner loops per outer iteration")
    parser.add_argument("--eval-epochs", type=int, default=100)
    args = parser.parse_args(argv)
    from bench.core.version import machine_label

    with tempfile.TemporaryDirectory() as tmp:
        matrix = Path(tmp) / "packing.yaml"
        matrix.write_text(
            yaml.safe_dump(
                small_matrix(args.dataset, args.method, args.cells, args.iterations, args.steps, args.eval_epochs)
            )
        )
        solo = timed_run(matrix, Path(tmp) / "solo", args.data_root, 1)
        packed = timed_run(matrix, Path(tmp) / "packed", args.data_root, args.workers)
        solo_records, packed_records = records(Path(tmp) / "solo"), records(Path(tmp) / "packed")
    a = {k: r["accuracies"]["ConvNet-3"] for k, r in solo_records.items()}
    b = {k: r["accuracies"]["ConvNet-3"] for k, r in packed_records.items()}
    if sorted(a) != sorted(b) or len(a) != args.cells:
        raise SystemExit(f"expected {args.cells} records from each run, got {len(a)} and {len(b)}")
    difference = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
    print(
        json.dumps(
            {
                "machine": machine_label(),
                "dataset": args.dataset,
                "method": args.method,
                "cells": args.cells,
                "workers": args.workers,
                "iterations": args.iterations,
                "steps": args.steps,
                "eval_epochs": args.eval_epochs,
                "threads": os.environ.get("OMP_NUM_THREADS"),
                "solo_s": round(solo, 1),
                "packed_s": round(packed, 1),
                "cells_per_hour_solo": round(3600 * args.cells / solo, 1),
                "cells_per_hour_packed": round(3600 * args.cells / packed, 1),
                "gain": round(solo / packed, 2),
                "max_accuracy_difference": round(difference, 3),
                "cell_s_solo": round(cell_seconds(solo_records), 1),
                "cell_s_packed": round(cell_seconds(packed_records), 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
