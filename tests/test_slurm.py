"""Against a real Slurm cluster (scripts/slurm-cluster.sh start): same table as a local run, a requeued job
resumes from its checkpoint with an identical result, and a failing cell shows in bench.execution.status."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("sbatch") is None, reason="sbatch not found: start a cluster with scripts/slurm-cluster.sh start"
    ),
]

TINY = {
    "name": "slurmtiny",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random", "DM"],
    "archs": ["ConvNet-3"],
    "seeds": [0, 1],
    "launcher": {"timeout_min": 10, "cpus_per_task": 1, "checkpoint_every": 1},
    "profiles": {
        "mini": {"max_per_class": 20, "defaults": {"iterations": 3, "batch_real": 8, "eval_epochs": 5, "eval_runs": 1}}
    },
}


def _cluster_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(state.strip() in ("idle", "mix", "alloc") for state in out.splitlines())


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not _cluster_up():
        pytest.skip("sbatch exists but no Slurm node is up: run `bash scripts/slurm-cluster.sh start`")


def _run(matrix: Path, results: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.run", str(matrix), "--results", str(results), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _accuracies(root: Path) -> dict[str, list[float]]:
    return {p.parent.name: json.loads(p.read_text())["accuracies"] for p in sorted(root.glob("*/result.json"))}


def test_slurm_run_gives_the_same_table_as_a_local_run(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(TINY))
    local = _run(matrix, tmp_path / "local", "--executor", "local")
    slurm = _run(matrix, tmp_path / "slurm", "--executor", "slurm")
    assert local.returncode == 0, local.stderr
    assert slurm.returncode == 0, slurm.stderr
    local_root = tmp_path / "local" / "slurmtiny" / "mini"
    slurm_root = tmp_path / "slurm" / "slurmtiny" / "mini"
    assert _accuracies(slurm_root) == _accuracies(local_root)
    jobs = json.loads((slurm_root / ".jobs.json").read_text())
    assert len(jobs) == 4 and all(j["cluster"] == "slurm" for j in jobs.values())
    table = (slurm_root / "table.md").read_text().split("\n\n")[1]
    assert table == (local_root / "table.md").read_text().split("\n\n")[1]
    status = subprocess.run(
        [sys.executable, "-m", "bench.status", str(slurm_root)], cwd=ROOT, capture_output=True, text=True
    )
    assert status.stdout.count("done") >= 4 and "4 done" in status.stdout


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_requeued_job_resumes_from_checkpoint_with_identical_result(tmp_path):
    spec = {
        **TINY,
        "methods": ["DC"],
        "seeds": [0],
        "profiles": {
            "mini": {
                "max_per_class": 20,
                "defaults": {"iterations": 300, "batch_real": 8, "eval_epochs": 5, "eval_runs": 1},
            }
        },
    }
    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(spec))
    local = _run(matrix, tmp_path / "local", "--executor", "local")
    assert local.returncode == 0, local.stderr
    root = tmp_path / "slurm" / "slurmtiny" / "mini"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", str(matrix), "--results", str(tmp_path / "slurm"), "--executor", "slurm"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = root / ".checkpoints" / "digits_ipc1_DC_ConvNet-3_s0.pt"
    _wait_for(ckpt.is_file, 300, "the first checkpoint")
    _wait_for(lambda: torch.load(ckpt, weights_only=True)["iteration"] >= 5, 300, "a few iterations")
    job_id = json.loads((root / ".jobs.json").read_text())["digits_ipc1_DC_ConvNet-3_s0"]["job_id"]
    requeue = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    assert requeue.returncode == 0, requeue.stderr
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    result = json.loads((root / "digits_ipc1_DC_ConvNet-3_s0" / "result.json").read_text())
    assert result["resumed_from"] >= 5  # the second run started from the checkpoint
    local_root = tmp_path / "local" / "slurmtiny" / "mini"
    assert _accuracies(root) == _accuracies(local_root)
    a = torch.load(root / "digits_ipc1_DC_ConvNet-3_s0" / "synthetic.pt", weights_only=True)["images"]
    b = torch.load(local_root / "digits_ipc1_DC_ConvNet-3_s0" / "synthetic.pt", weights_only=True)["images"]
    assert torch.equal(a, b)
    assert not ckpt.exists()  # cleared once the cell finished


def test_failing_cell_is_reported_by_status_while_others_finish(tmp_path):
    """A cell that diverges inside its Slurm job is reported failed (with the reason); the others finish."""
    profile = {
        "max_per_class": 20,
        "defaults": {"iterations": 3, "batch_real": 4, "eval_epochs": 5, "eval_runs": 1},
        "methods": {"DC": {"lr_img": 1.0e6, "objective": {"gradient_weight": 1.0e30}}},
    }
    spec = {**TINY, "methods": ["Random", "DC"], "seeds": [0], "profiles": {"mini": profile}}
    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(spec))
    proc = _run(matrix, tmp_path / "r", "--executor", "slurm")
    assert proc.returncode == 1
    root = tmp_path / "r" / "slurmtiny" / "mini"
    assert (root / "digits_ipc1_Random_ConvNet-3_s0" / "result.json").is_file()
    status = subprocess.run([sys.executable, "-m", "bench.status", str(root)], cwd=ROOT, capture_output=True, text=True)
    lines = {line.split()[1]: line for line in status.stdout.splitlines() if len(line.split()) > 1 and "_s0" in line}
    assert lines["digits_ipc1_Random_ConvNet-3_s0"].startswith("done")
    failed = lines["digits_ipc1_DC_ConvNet-3_s0"]
    assert failed.startswith("failed") and "diverged at iteration" in failed
