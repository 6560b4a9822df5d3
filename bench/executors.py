"""Where cells run, behind one small interface (``run(cells) -> failed ids``), chosen by name.

``local`` runs cells in this process; ``submitit-local`` and ``slurm`` submit them as one job array
through submitit (separate processes, or a Slurm cluster). Submitted cells are
:class:`CellTask` objects: checkpointable, so a timed-out or preempted job is requeued and resumes
from its last checkpoint. ``launcher.workers`` (local) and ``launcher.cells_per_gpu`` (one job, one GPU)
run several cells at once in separate processes, as one cell leaves most of a GPU idle. Job ids are recorded in ``<results>/.jobs.json`` for ``bench.status``.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import submitit
import torch
from tqdm import tqdm

from bench.checkpoint import CHECKPOINT_DIR, checkpoint_for
from bench.matrix import Cell
from bench.registry import Registry
from bench.files import atomic_write_text, file_lock
from bench.settings import Launcher
from bench.results import LOCK_DIR, cell_lock, check_record, clean_leftovers

ERRORS_DIR = ".errors"
PHASES = (("distill", "continual"), ("evaluate",))   # tasks that must finish before the next phase starts
JOBS_FILE = ".jobs.json"


class ExecutorError(RuntimeError):
    pass


def error_path(root: Path, cell_id: str) -> Path:
    return root / ERRORS_DIR / f"{cell_id}.txt"


class CellInProgress(RuntimeError):
    """Another run of the same results folder holds this cell's lock: it is computing it now."""


def run_recorded(cell: Cell, root: Path, data_root: str | None, checkpoint_every: int,
                 show_iterations: bool = True) -> dict[str, Any]:
    """Run one cell under its lock, with checkpoints; on failure keep the traceback for ``bench.status``.

    A cell another run is computing raises CellInProgress; one another run has finished meanwhile is not
    computed again; leftovers of a killed earlier attempt are removed first.
    """
    from bench.cell import cell_fingerprint, run_and_store

    fingerprint = cell_fingerprint(cell)
    with cell_lock(root, cell.id) as mine:
        if not mine:
            raise CellInProgress(f"{cell.id} is being computed by another run; skipped here")
        check = check_record(root, cell.id, fingerprint)
        if check.state == "done":
            return check.record
        clean_leftovers(root, cell.id)
        clean_leftovers(root / CHECKPOINT_DIR, f"{cell.id}.pt")
        ckpt = checkpoint_for(root, cell.id, checkpoint_every, fingerprint)
        with tqdm(desc=f"{cell.id} iterations", unit="it", leave=False, mininterval=10, dynamic_ncols=True,
                  disable=not show_iterations) as bar:
            try:
                result = run_and_store(cell, root, data_root, ckpt, progress=lambda done: bar.update(done - bar.n))
            except Exception:
                atomic_write_text(error_path(root, cell.id), traceback.format_exc())
                raise
        ckpt.clear()
        error_path(root, cell.id).unlink(missing_ok=True)
        return result


def available_cores() -> int:
    """Cores this process may use (a Slurm job's allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def _worker_init(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    exit_with_parent(parent)


def exit_with_parent(parent: int) -> None:
    """Make this worker receive SIGTERM when the process that started it dies (Linux), so a killed or
    interrupted ``bench.run`` leaves no orphan computing cells on the user's cores. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:   # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_task(task: "PackedTask", root: str, data_root: str | None, checkpoint_every: int) -> dict[str, Any] | None:
    """What a worker does with a task: train a shared preparation (returns None) or run a cell (its record)."""
    if task.prepares is not None:
        from bench.cell import prepare_cell

        prepare_cell(task.cell, Path(root), data_root)
        return None
    return run_recorded(task.cell, Path(root), data_root, checkpoint_every, show_iterations=False)


TaskRunner = Callable[["PackedTask", str, "str | None", int], "dict[str, Any] | None"]
WORKER_DEATHS_ALLOWED = 1   # a task running when its worker pool died this many times is retried; once more, it fails


@dataclass
class PackedTask:
    """One job for a worker: a cell (``needs``: the preparation it waits for) or a preparation (``prepares``:
    its key; ``cell`` is the first cell that needs it). ``deaths``: worker-pool deaths it was running through."""

    cell: Cell
    prepares: tuple[Any, ...] | None = None
    needs: tuple[Any, ...] | None = None
    deaths: int = 0

    @property
    def name(self) -> str:
        return self.cell.id if self.prepares is None else " ".join(str(part) for part in self.prepares if part is not None)


def packed_tasks(cells: list[Cell]) -> list[PackedTask]:
    """Each shared preparation once, ahead of the cells (in their order) that wait for it."""
    from bench.cell import cell_preparation

    needs = {c.id: cell_preparation(c) for c in cells}
    first: dict[tuple[Any, ...], Cell] = {}
    for c in cells:
        if needs[c.id] is not None:
            first.setdefault(needs[c.id], c)
    return [PackedTask(c, prepares=key) for key, c in first.items()] + [PackedTask(c, needs=needs[c.id]) for c in cells]


def next_ready(queue: list[PackedTask], prepared: set[tuple[Any, ...]], suspects_only: bool = False) -> int | None:
    """Index of the first task a free worker may start: a preparation, or a cell whose preparation is over
    (never one that would wait on another worker's preparation while other cells could run); with
    ``suspects_only``, only tasks a dead pool interrupted."""
    return next((i for i, t in enumerate(queue) if (t.needs is None or t.needs in prepared)
                 and (t.deaths > 0 or not suspects_only)), None)


class _PackedRun:
    """The queue and outcome of one packed run; :meth:`drain` feeds one worker pool until the queue is empty or
    the pool dies (a worker killed, e.g. for memory, takes the whole pool down with it)."""

    def __init__(self, cells: list[Cell], report: Callable[[str], None], bar: tqdm) -> None:
        self.queue = packed_tasks(cells)
        self.report, self.bar = report, bar
        self.prepared: set[tuple[Any, ...]] = set()
        self.failures: list[str] = []

    def fail_cell(self, task: PackedTask, why: str) -> None:
        self.report(f"cell {task.cell.id} failed: {why}")
        self.failures.append(task.cell.id)
        self.bar.update(1)

    def preparation_failed(self, task: PackedTask, why: str) -> None:
        """Its cells fail at once (a resume retries them) instead of each training the same thing in turn."""
        self.report(f"preparing {task.name} failed ({why}); the cells that need it are not run")
        waiting = [t for t in self.queue if t.needs == task.prepares]
        self.queue = [t for t in self.queue if t.needs != task.prepares]
        for t in waiting:
            self.fail_cell(t, f"its preparation ({task.name}) failed")

    def finished(self, task: PackedTask, started: float, future: Future) -> None:
        from bench.cell import timing_line

        error = future.exception()
        if task.prepares is not None:
            if error is None:
                self.prepared.add(task.prepares)
                self.report(f"prepared {task.name} in {time.perf_counter() - started:.0f} s")
            else:
                self.preparation_failed(task, f"{type(error).__name__}: {error}")
        elif isinstance(error, CellInProgress):
            self.report(str(error))
            self.bar.update(1)
        elif error is not None:   # a failing cell must not stop the others
            self.fail_cell(task, f"{type(error).__name__}: {error}")
        else:
            self.report(timing_line(future.result()))
            self.bar.update(1)

    def drain(self, pool: ProcessPoolExecutor, width: int, runner: TaskRunner, args: tuple[str, str | None, int],
              suspects_only: bool = False) -> tuple[bool, list[PackedTask], int]:
        """Run queued tasks, ``width`` at a time (only those a dead pool interrupted, with ``suspects_only``),
        until none is left or the pool dies. Returns whether it died, the tasks running then, and how many
        tasks this pool finished."""
        running: dict[Future, tuple[PackedTask, float]] = {}
        done_here = 0

        def settle(futures: Any) -> None:   # hand over what finished normally, even as the pool breaks
            nonlocal done_here
            for future in [f for f in futures if f.done() and not isinstance(f.exception(), BrokenProcessPool)]:
                self.finished(*running.pop(future), future)
                done_here += 1

        while self.queue or running:
            while len(running) < width and (i := next_ready(self.queue, self.prepared, suspects_only)) is not None:
                try:
                    future = pool.submit(runner, self.queue[i], *args)
                except BrokenProcessPool:
                    settle(list(running))
                    return True, [task for task, _ in running.values()], done_here
                running[future] = (self.queue.pop(i), time.perf_counter())
            if not running:   # nothing may start: the suspects are done, or only cells whose preparation never ran
                if not suspects_only:   # cannot happen, but never drop cells silently
                    for task in self.queue:
                        self.fail_cell(task, "its preparation was never run")
                    self.queue.clear()
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            settle(list(running))
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                return True, [task for task, _ in running.values()], done_here
        return False, [], done_here

    def requeue(self, interrupted: list[PackedTask], finished_here: int) -> None:
        """Put the tasks a dead pool interrupted back at the front (cells resume from their checkpoints). They are
        retried one at a time, so a death is then charged to the one task running; a task that dies more than
        ``WORKER_DEATHS_ALLOWED`` times fails alone (it is the cause)."""
        if not interrupted:
            if finished_here == 0:   # the pool died before doing anything: new workers would too
                for task in self.queue:
                    if task.prepares is None:
                        self.fail_cell(task, "the worker processes could not start")
                self.queue.clear()
            else:   # an idle worker died (killed for memory between tasks): new workers, no task to blame
                self.report("a worker died between tasks; new workers take the queue")
            return
        again = []
        for task in interrupted:
            task.deaths += 1
            if task.deaths <= WORKER_DEATHS_ALLOWED or len(interrupted) > 1:   # several running: the cause is unknown
                again.append(task)
            elif task.prepares is not None:
                self.preparation_failed(task, "its worker died every time")
            else:
                self.fail_cell(task, "its worker died every time (out of memory?)")
        self.queue = again + self.queue
        self.report(f"a worker died; {len(again)} interrupted task(s) restart, one at a time, in new workers")


def run_packed(cells: list[Cell], root: Path, data_root: str | None, checkpoint_every: int, workers: int,
               report: Callable[[str], None] = print, runner: TaskRunner = run_task) -> list[str]:
    """Run cells ``workers`` at a time, each in its own process with an equal share of the CPU threads (one
    device shared by all). Shared preparations (feature networks) run first, once each, and no cell is
    started before the preparation it needs is over; if one fails, its cells fail without running. A worker
    that dies takes the pool down: the interrupted tasks are then retried one at a time (so a task that kills
    its worker again is known, and fails alone), and new workers take the rest of the queue. Returns the ids
    of the cells that failed; the others are recorded as usual. ``runner`` is what a worker does with a task
    (:func:`run_task`; tests substitute one that crashes)."""
    context = multiprocessing.get_context("spawn")
    args = (str(root), data_root, checkpoint_every)
    with tqdm(total=len(cells), desc=f"cells ({workers} at once)", unit="cell") as bar:
        state = _PackedRun(cells, report, bar)
        while state.queue:
            suspects = any(t.deaths for t in state.queue)
            width = 1 if suspects else workers
            threads = max(1, available_cores() // width)
            with ProcessPoolExecutor(width, mp_context=context, initializer=_worker_init,
                                     initargs=(threads, os.getpid())) as pool:
                died, interrupted, finished_here = state.drain(pool, width, runner, args, suspects_only=suspects)
            if died:
                state.requeue(interrupted, finished_here)
    return state.failures


def packing_width(requested: int, per_cell_gb: float = 2.0) -> int:
    """How many cells may share this machine's GPU: ``requested``, fewer when its free memory cannot give each
    ``per_cell_gb``; any number on a CPU-only machine (they share its threads instead)."""
    if requested <= 1 or not torch.cuda.is_available():
        return max(requested, 1)
    free_gb = torch.cuda.mem_get_info()[0] / 2**30
    return max(1, min(requested, int(free_gb // per_cell_gb)))


class CellTask(submitit.helpers.Checkpointable):
    """The callable submitted for a group of cells (one, unless ``cells_per_gpu`` packs several onto one
    GPU). On timeout/preemption submitit requeues the same object and each cell resumes from its checkpoint
    file (the object itself carries no run state)."""

    def __init__(self, cells: list[Cell], root: str, data_root: str | None, checkpoint_every: int) -> None:
        self.cells, self.root, self.data_root, self.checkpoint_every = cells, root, data_root, checkpoint_every

    def __call__(self) -> list[str]:
        width = packing_width(len(self.cells))
        if width < len(self.cells):
            print(f"free GPU memory allows {width} of the {len(self.cells)} packed cells at once")
        if width == 1:
            failed = []
            for cell in self.cells:   # one failure must not skip the rest of the group
                try:
                    run_recorded(cell, Path(self.root), self.data_root, self.checkpoint_every)
                except Exception as err:
                    print(f"cell {cell.id} failed: {type(err).__name__}: {err}")
                    failed.append(cell.id)
        else:
            failed = run_packed(self.cells, Path(self.root), self.data_root, self.checkpoint_every, width)
        if failed:
            raise RuntimeError(f"{len(failed)} packed cell(s) failed: {', '.join(failed)}")
        return [c.id for c in self.cells]


class LocalExecutor:
    """Runs cells in this process one after another with a progress bar, or ``launcher.workers`` at a time
    in worker processes."""

    def __init__(self, root: Path, data_root: str | None, launcher: Launcher) -> None:
        self.root, self.data_root, self.launcher = root, data_root, launcher

    def run(self, cells: list[Cell], resume: bool = False) -> list[str]:
        from bench.cell import timing_line

        if self.launcher.workers > 1 and len(cells) > 1:
            failures = []
            for phase in PHASES:   # evaluation cells read the sets their distillation cells store
                todo = [c for c in cells if c.task in phase]
                if todo:
                    failures += run_packed(todo, self.root, self.data_root, self.launcher.checkpoint_every,
                                           min(self.launcher.workers, len(todo)), report=tqdm.write)
            return failures
        failures = []
        bar = tqdm(cells, desc="cells", unit="cell", dynamic_ncols=True)
        for cell in bar:
            bar.set_postfix_str(cell.id)
            try:
                tqdm.write(timing_line(run_recorded(cell, self.root, self.data_root, self.launcher.checkpoint_every)))
            except CellInProgress as busy:
                tqdm.write(str(busy))
            except Exception as err:  # a failing cell must not stop the others
                tqdm.write(f"cell {cell.id} failed: {type(err).__name__}: {err}")
                failures.append(cell.id)
        return failures


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

    def run(self, cells: list[Cell], resume: bool = False) -> list[str]:
        """Distillation cells first, then the evaluation cells that read their stored sets."""
        failures: list[str] = []
        for phase in PHASES:
            failures += self.run_phase([c for c in cells if c.task in phase])
        return failures

    def run_phase(self, cells: list[Cell]) -> list[str]:
        live = live_jobs(self.root)
        todo = [c for c in cells if c.id not in live]
        if len(todo) < len(cells):
            print(f"{len(cells) - len(todo)} cell(s) already pending or running; not submitted again")
        if not todo:
            return []
        executor = self.make_executor()
        per_job = self.launcher.cells_per_gpu
        groups = [todo[i:i + per_job] for i in range(0, len(todo), per_job)]
        with executor.batch():
            jobs = [executor.submit(CellTask(g, str(self.root), self.data_root, self.launcher.checkpoint_every))
                    for g in groups]
        record_jobs(self.root, {c.id: j.job_id for g, j in zip(groups, jobs) for c in g}, self.cluster or "auto")
        print(f"submitted {len(todo)} cell(s) as {len(jobs)} job(s) {jobs[0].job_id.split('_')[0]}: "
              f"python -m bench.status {self.root}")
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
    with file_lock(root / LOCK_DIR / "jobs.lock"):
        known = recorded_jobs(root)
        known.update({cell_id: {"job_id": job_id, "cluster": cluster} for cell_id, job_id in jobs.items()})
        atomic_write_text(root / JOBS_FILE, json.dumps(known, indent=1))


def recorded_jobs(root: Path) -> dict[str, dict[str, str]]:
    path = root / JOBS_FILE
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


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
    return {cell_id for cell_id, entry in recorded_jobs(root).items()
            if check_record(root, cell_id).state != "done" and job_state(root, entry) in LIVE_STATES}


EXECUTORS: Registry[Callable[..., Any]] = Registry("executor", ExecutorError)
for _name, _executor in (("local", LocalExecutor), ("submitit-local", SubmititLocalExecutor), ("slurm", SlurmExecutor)):
    EXECUTORS.add(_name, _executor)
