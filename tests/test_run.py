"""End to end: a tiny matrix runs, writes results and tables; an interrupted run resumes without redoing work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from crafted_records import write_record
from run_helpers import run_matrix

from bench.reporting.tables import build_report

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random", "DC", "DM"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {
        "mini": {"max_per_class": 20, "defaults": {"iterations": 2, "batch_real": 8, "eval_epochs": 3, "eval_runs": 1}}
    },
}


def _run(matrix: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_matrix(matrix, results, *extra)


def test_tiny_matrix_end_to_end(tmp_path):
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(yaml.safe_dump(TINY))
    results = tmp_path / "results"
    proc = _run(matrix, results)
    assert proc.returncode == 0, proc.stderr
    root = results / "tiny" / "mini"
    done = sorted(p.parent.name for p in root.glob("*/result.json"))
    assert done == ["digits_ipc1_DC_ConvNet-3_s0", "digits_ipc1_DM_ConvNet-3_s0", "digits_ipc1_Random_ConvNet-3_s0"]
    result = json.loads((root / "digits_ipc1_DC_ConvNet-3_s0" / "result.json").read_text())
    assert result["scale"] == "mini" and result["data_used"] == "digits"
    assert len(result["accuracies"]["ConvNet-3"]) == 1
    assert (root / "digits_ipc1_DC_ConvNet-3_s0" / "synthetic.pt").is_file()
    md = (root / "table.md").read_text()
    assert "| DC " in md and "digits/1" in md and "Scale: mini" in md
    assert (root / "table.tex").read_text().count("\\\\") >= 4  # header + 3 method rows
    # the dry run now reports every cell as done
    dry = _run(matrix, results, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("  done  ") == 3


def test_report_pools_seeds_and_marks_paper_values(tmp_path):
    root = tmp_path / "m" / "paper"
    for seed, accs in ((0, [90.0, 92.0]), (1, [94.0, 96.0])):
        write_record(root, {"dataset": "mnist", "ipc": 1, "method": "DC", "seed": seed}, {"ConvNet-3": accs})
    report = build_report(root)
    text = report.table.loc["DC", "mnist/1"]
    assert text.startswith("93.0 ± 2.2")  # pooled over both seeds and both runs
    assert "(91.7, +1.3)" in text  # published DC MNIST/1 = 91.7


@pytest.mark.slow
def test_interrupt_then_resume_does_only_the_missing_cells(tmp_path):
    spec = {
        **TINY,
        "methods": ["DC", "DM"],
        "seeds": [0, 1],
        "profiles": {
            "mini": {
                "max_per_class": 20,
                "defaults": {"iterations": 3, "batch_real": 8, "eval_epochs": 20, "eval_runs": 1},
            }
        },
    }
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    root = results / "tiny" / "mini"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", str(matrix), "--results", str(results)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(root.glob("*/result.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/result.json")}
    assert 1 <= len(finished) < 4, finished
    assert not [
        p
        for p in root.iterdir()
        if p.name.startswith(".") and p.name != ".errors" and p.is_dir() and (p / "result.json").exists()
    ]
    resumed = _run(matrix, results)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{4 - len(finished)} of 4 cells to run" in resumed.stdout
    after = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/result.json")}
    assert len(after) == 4
    for name, mtime in finished.items():
        assert after[name] == mtime  # finished cells were not recomputed


def test_max_during_distillation_is_recorded_and_reported_apart(tmp_path):
    """DREAM+'s reported kind of number (the maximum, over the evaluations during distillation, of each one's
    best validation point) is recorded for cells with eval_every and tabulated only in its own labelled table."""
    from bench.experiment.matrix import parse_matrix
    from bench.experiment.plan import plan_cells
    from bench.experiment.tasks import run_and_store

    raw = {
        "name": "during",
        "datasets": ["digits"],
        "ipc": [1],
        "methods": ["IDC"],
        "archs": ["ConvNet-3"],
        "seeds": [0],
        "profiles": {
            "mini": {
                "max_per_class": 20,
                "defaults": {
                    "iterations": 2,
                    "steps_per_network": 1,
                    "batch_real": 8,
                    "eval_epochs": 4,
                    "eval_runs": 1,
                    "eval_every": 1,
                },
            }
        },
    }
    plan = plan_cells(parse_matrix(raw, "during").cells, None)[0]
    root = tmp_path / "during" / "mini"
    result = run_and_store(plan, root)
    curve = [row["accuracy"] for row in result.log if "accuracy" in row]
    assert len(curve) == 3  # iterations 0, 1, 2
    during = result.max_during_distillation["ConvNet-3"][0]
    assert during >= max(result.best_accuracies["ConvNet-3"]) and during >= max(curve)  # best >= last per point
    assert "MAXIMUM over the evaluations during distillation" in build_report(root, accuracy="max-during").caption
    assert (root / "table_max-during.md").is_file()
    assert "MAXIMUM" not in build_report(root).caption and "MAXIMUM" not in (root / "table.md").read_text()
