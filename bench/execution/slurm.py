"""The ``submitit-local`` and ``slurm`` executors: cells as one job array through submitit, checkpointable so a
timed-out or preempted job is requeued and resumes; job ids recorded in ``<results>/.jobs.json`` for status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import submitit
from tqdm import tqdm

from bench.core.files import atomic_write_text, file_lock
from bench.execution.base import PHASES, ExecutorError
from bench.execution.pool import packing_width, run_packed
from bench.execution.recorded import CellInProgress, run_recorded
from bench.experiment.plan import CellPlan
from bench.experiment.settings import Launcher
from bench.experiment.store import LOCK_DIR, check_record, inside, read_own_json, warn_on_stderr

JOBS_FILE = ".jobs.json"


class CellTask(submitit.helpers.Checkpointable):
    """The callable submitted for a group of cells (one, unless ``cells_per_gpu`` packs several onto one
    GPU). On timeout/preemption submitit requeues the same object and each cell resumes from its checkpoint
    file (the object itself carries no run state)."""

    def __init__(self, cells: list[CellPlan], root: str, data_root: str | None, checkpoint_every: int) -> None:
        self.cells, self.root, self.data_root, self.checkpoint_every = cells, root, data_root, checkpoint_every

    def __call__(self) -> list[str]:
        width = packing_width(len(self.cells))
        if width < len(self.cells):
            print(f"free GPU memory allows {width} of the {len(self.cells)} packed cells at once")
        if width == 1:
            failed = []
            for cell in self.cells:  # one failure must not skip the rest of the group
                try:
                    run_recorded(cell, Path(self.root), self.data_root, self.checkpoint_every)
                except CellInProgress as busy:  # another run computes or computed it: not a failure here
                    print(busy)
                except Exception as err:
                    print(f"cell {cell.id} failed: {type(err).__name__}: {err}")
                    failed.append(cell.id)
        else:
            failed = run_packed(self.cells, Path(self.root), self.data_root, self.checkpoint_every, width)
        if failed:
            raise RuntimeError(f"{len(failed)} packed cell(s) failed: {', '.join(failed)}")
        return [c.id for c in self.cells]


class SubmititExecutor:
    """Submits the cells as one job array and waits for them, showing progress."""

    cluster: str | None = None

    def __init__(self, root: Path, data_root: str | None, launcher: Launcher) -> None:
        self.root, self.data_root, self.launcher = root, data_root, launcher

    def make_executor(self) -> submitit.Executor:
        folder = self.root / ".submitit"
        launcher = self.launcher
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params: dict[str, Any] = {"timeout_min": launcher.timeout_min, "name": f"dreambench-{self.root.parent.name}"}
        if self.cluster == "local":
            params["cpus_per_task"] = launcher.cpus_per_task or 1
        else:
            params.update(launcher.slurm_parameters())
        executor.update_parameters(**params)
        return executor

    def run(self, cells: list[CellPlan]) -> list[str]:
        """Distillation cells first, then the evaluation cells that read their stored sets."""
        failures: list[str] = []
        for phase in PHASES:
            failures += self.run_phase([c for c in cells if c.task in phase])
        return failures

    def run_phase(self, cells: list[CellPlan]) -> list[str]:
        live = live_jobs(self.root)
        todo = [c for c in cells if c.id not in live]
        if len(todo) < len(cells):
            print(f"{len(cells) - len(todo)} cell(s) already pending or running; not submitted again")
        if not todo:
            return []
        record_jobs(self.root, {}, self.cluster or "auto")  # the job record must be writable before anything runs
        per_job = self.launcher.cells_per_gpu
        groups = [todo[i : i + per_job] for i in range(0, len(todo), per_job)]
        try:
            executor = self.make_executor()
            with executor.batch():
                jobs = [
                    executor.submit(CellTask(g, str(self.root), self.data_root, self.launcher.checkpoint_every))
                    for g in groups
                ]
        except Exception as err:  # no Slurm here, an unreachable controller, a refused sbatch: one line, nothing ran
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            why = f"{type(err).__name__}: {lines[-1][:200]}" if lines else type(err).__name__
            raise ExecutorError(
                f"{self.cluster or 'submitit'} submission failed ({why}); nothing was submitted"
            ) from None
        record_jobs(self.root, {c.id: j.job_id for g, j in zip(groups, jobs) for c in g}, self.cluster or "auto")
        print(
            f"submitted {len(todo)} cell(s) as {len(jobs)} job(s) {jobs[0].job_id.split('_')[0]}: "
            f"python -m bench.status {self.root}"
        )
        failures = []
        for group, job in tqdm(list(zip(groups, jobs)), desc="jobs", unit="job"):
            try:
                job.result()
            except Exception as err:  # submitit raises the job's error here
                reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                failed = [c.id for c in group if check_record(self.root, c.id).state != "done"]
                failures += failed
                tqdm.write(f"cell(s) {', '.join(failed)} failed: {reason}")
        return failures


class SubmititLocalExecutor(SubmititExecutor):
    cluster = "local"


class SlurmExecutor(SubmititExecutor):
    cluster = "slurm"


def record_jobs(root: Path, jobs: dict[str, str], cluster: str) -> None:
    """Merge job ids into ``.jobs.json`` under a lock, so concurrent submissions keep each other's ids."""
    with file_lock(inside(root, root / LOCK_DIR / "jobs.lock")):
        known = recorded_jobs(root)
        known.update({cell_id: {"job_id": job_id, "cluster": cluster} for cell_id, job_id in jobs.items()})
        atomic_write_text(root / JOBS_FILE, json.dumps(known, indent=1))


def recorded_jobs(root: Path) -> dict[str, dict[str, str]]:
    """cell id -> {job_id, cluster} from ``.jobs.json``; entries of another shape are dropped with one warning."""
    path = root / JOBS_FILE
    known = read_own_json(path, 64 << 20, lambda data: isinstance(data, dict), "Slurm job states are not shown")
    if known is None:
        return {}
    good = {
        k: v
        for k, v in known.items()
        if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) and isinstance(v.get("job_id"), str)
    }
    if len(good) < len(known):
        warn_on_stderr(f"{path}: entries that are not {{job_id, cluster}} records are ignored")
    return good


LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING"}


def job_state(root: Path, entry: dict[str, str]) -> str:
    """Slurm's state of a recorded job, asked through submitit ('UNKNOWN' when it cannot tell)."""
    if entry.get("cluster") != "slurm":
        return "UNKNOWN"
    try:
        job = submitit.SlurmJob(folder=root / ".submitit", job_id=entry["job_id"])
        return str(job.state).split()[0]
    except Exception:
        return "UNKNOWN"


def live_jobs(root: Path) -> set[str]:
    return {
        cell_id
        for cell_id, entry in recorded_jobs(root).items()
        if check_record(root, cell_id).state != "done" and job_state(root, entry) in LIVE_STATES
    }
