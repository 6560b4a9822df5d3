"""Running ``python -m bench.run`` as a user would, in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_matrix(matrix: Path, results: Path, *extra: str, timeout: int = 600, threads: int | None = None):
    """``python -m bench.run MATRIX --results RESULTS *extra`` from the repository root; ``threads`` sets
    OMP_NUM_THREADS (e.g. 1: the thread count of a packed worker on 2 cores)."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    command = [sys.executable, "-m", "bench.run", str(matrix), "--results", str(results), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
