"""Per-cell state of a results folder, for local and submitted runs alike.

done = a valid result written with the matrix's current settings; running = a run holds the cell's lock now
(or Slurm says so); pending = planned and not started (or queued on Slurm); failed = the cell's traceback was
recorded (its last line is shown, e.g. "diverged at iteration k") or Slurm reports a failure; corrupt = an
unreadable record or one off the schema; stale = a record computed under another plan.
"""

from __future__ import annotations

from pathlib import Path

from bench.execution.recorded import ERRORS_DIR, error_path
from bench.execution.slurm import job_state, recorded_jobs
from bench.experiment.store import cell_running, check_record, read_plan

SLURM_FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def cell_states(root: Path) -> dict[str, tuple[str, str]]:
    """cell id -> (state, detail) for every cell the plan lists, a job was recorded for, or a folder holds."""
    states: dict[str, tuple[str, str]] = {}
    jobs = recorded_jobs(root)
    plan = read_plan(root) or {}
    ids = set(jobs) | set(plan) | {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    ids |= {p.stem for p in (root / ERRORS_DIR).glob("*.txt")} if (root / ERRORS_DIR).is_dir() else set()
    for cell_id in sorted(ids):
        entry = jobs.get(cell_id, {})
        check = check_record(root, cell_id, plan.get(cell_id))
        if check.state == "done":
            states[cell_id] = ("done", entry.get("job_id", ""))
            continue
        if check.state in ("corrupt", "stale"):
            states[cell_id] = (check.state, check.reason)
            continue
        slurm = job_state(root, entry) if entry else None
        err = error_path(root, cell_id)
        if cell_running(root, cell_id) or slurm in ("RUNNING", "COMPLETING"):
            states[cell_id] = ("running", entry.get("job_id", "") or "locked by a local run")
        elif slurm in ("PENDING", "REQUEUED", "CONFIGURING"):
            states[cell_id] = ("pending", entry.get("job_id", ""))
        elif err.is_file():
            lines = [line for line in err.read_text(errors="replace").splitlines() if line.strip()]
            states[cell_id] = ("failed", lines[-1][:300] if lines else "")
        elif slurm in SLURM_FAILED:
            states[cell_id] = ("failed", f"Slurm state {slurm}")
        elif cell_id in plan:
            states[cell_id] = ("pending", "not started" + (f" (job {entry['job_id']}: {slurm})" if entry else ""))
        else:
            states[cell_id] = ("unknown", f"{entry.get('job_id', '')} {slurm or ''}".strip() or "not in the plan")
    return states
