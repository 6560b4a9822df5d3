"""``python -m bench.status results/<matrix>/<profile>``: per-cell state of a submitted matrix.

done = a valid result written with the matrix's current settings; corrupt = an unreadable or invalid
record (the file is named); stale = a record computed with other settings; failed = the cell's traceback
was recorded (its last line is shown, e.g. "diverged at iteration k"); otherwise the state Slurm reports for
the recorded job, asked through submitit.
"""
from __future__ import annotations

from pathlib import Path

from bench.execution.recorded import error_path
from bench.execution.slurm import job_state, recorded_jobs
from bench.experiment.store import check_record, read_plan


def cell_states(root: Path) -> dict[str, tuple[str, str]]:
    """cell id -> (state, detail)."""
    states: dict[str, tuple[str, str]] = {}
    jobs = recorded_jobs(root)
    plan = read_plan(root) or {}
    ids = set(jobs) | set(plan) | {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    ids |= {p.stem for p in (root / ".errors").glob("*.txt")} if (root / ".errors").is_dir() else set()
    for cell_id in sorted(ids):
        entry = jobs.get(cell_id, {})
        check = check_record(root, cell_id, plan.get(cell_id))
        if check.state == "done":
            states[cell_id] = ("done", entry.get("job_id", ""))
            continue
        if check.state in ("corrupt", "stale"):
            states[cell_id] = (check.state, check.reason)
            continue
        slurm = job_state(root, entry) if entry else "UNKNOWN"
        err = error_path(root, cell_id)
        if err.is_file() and slurm not in ("PENDING", "RUNNING", "REQUEUED"):
            lines = [line for line in err.read_text().splitlines() if line.strip()]
            states[cell_id] = ("failed", lines[-1] if lines else "")
        elif slurm in ("PENDING", "REQUEUED", "CONFIGURING"):
            states[cell_id] = ("pending", entry.get("job_id", ""))
        elif slurm in ("RUNNING", "COMPLETING"):
            states[cell_id] = ("running", entry.get("job_id", ""))
        elif slurm in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"):
            states[cell_id] = ("failed", f"Slurm state {slurm}")
        else:
            states[cell_id] = ("unknown", f"{entry.get('job_id', '')} {slurm}".strip())
    return states
