"""Several cells at once on one machine: worker processes with a share of the threads each, shared preparations
(feature networks) done once ahead of the cells that need them, and recovery from a worker pool that dies."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from bench.execution.recorded import CellInProgress, run_recorded
from bench.experiment.plan import CellPlan
from bench.experiment.tasks import cell_preparation, prepare_cell, timing_line


def available_cores() -> int:
    """Cores this process may use (a Slurm job's allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_init(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    exit_with_parent(parent)


def exit_with_parent(parent: int) -> None:
    """Make this worker receive SIGTERM when the process that started it dies (Linux), so a killed or
    interrupted ``bench.cli.run`` leaves no orphan computing cells on the user's cores. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_task(task: PackedTask, root: str, data_root: str | None, checkpoint_every: int) -> dict[str, Any] | None:
    """What a worker does with a task: train a shared preparation (returns None) or run a cell (its record)."""
    if task.prepares is not None:
        prepare_cell(task.plan, Path(root), data_root)
        return None
    return run_recorded(task.plan, Path(root), data_root, checkpoint_every, show_iterations=False)


TaskRunner = Callable[["PackedTask", str, "str | None", int], "dict[str, Any] | None"]
WORKER_DEATHS_ALLOWED = 1  # a task running when its worker pool died this many times is retried; once more, it fails


@dataclass
class PackedTask:
    """One job for a worker: a cell (``needs``: the preparation it waits for) or a preparation (``prepares``:
    its key; ``plan`` is the first cell that needs it). ``deaths``: worker-pool deaths it was running through."""

    plan: CellPlan
    prepares: tuple[Any, ...] | None = None
    needs: tuple[Any, ...] | None = None
    deaths: int = 0

    @property
    def name(self) -> str:
        return (
            self.plan.id if self.prepares is None else " ".join(str(part) for part in self.prepares if part is not None)
        )


def packed_tasks(cells: list[CellPlan]) -> list[PackedTask]:
    """Each shared preparation once, ahead of the cells (in their order) that wait for it."""
    needs = {c.id: cell_preparation(c) for c in cells}
    first: dict[tuple[Any, ...], CellPlan] = {}
    for c in cells:
        if needs[c.id] is not None:
            first.setdefault(needs[c.id], c)
    return [PackedTask(c, prepares=key) for key, c in first.items()] + [PackedTask(c, needs=needs[c.id]) for c in cells]


def next_ready(queue: list[PackedTask], prepared: set[tuple[Any, ...]], suspects_only: bool = False) -> int | None:
    """Index of the first task a free worker may start: a preparation, or a cell whose preparation is over
    (never one that would wait on another worker's preparation while other cells could run); with
    ``suspects_only``, only tasks a dead pool interrupted."""
    return next(
        (
            i
            for i, t in enumerate(queue)
            if (t.needs is None or t.needs in prepared) and (t.deaths > 0 or not suspects_only)
        ),
        None,
    )


class _PackedRun:
    """The queue and outcome of one packed run; :meth:`drain` feeds one worker pool until the queue is empty or
    the pool dies (a worker killed, e.g. for memory, takes the whole pool down with it)."""

    def __init__(self, cells: list[CellPlan], report: Callable[[str], None], bar: tqdm) -> None:
        self.queue = packed_tasks(cells)
        self.report, self.bar = report, bar
        self.prepared: set[tuple[Any, ...]] = set()
        self.failures: list[str] = []

    def fail_cell(self, task: PackedTask, why: str) -> None:
        self.report(f"cell {task.plan.id} failed: {why}")
        self.failures.append(task.plan.id)
        self.bar.update(1)

    def preparation_failed(self, task: PackedTask, why: str) -> None:
        """Its cells fail at once (a resume retries them) instead of each training the same thing in turn."""
        self.report(f"preparing {task.name} failed ({why}); the cells that need it are not run")
        waiting = [t for t in self.queue if t.needs == task.prepares]
        self.queue = [t for t in self.queue if t.needs != task.prepares]
        for t in waiting:
            self.fail_cell(t, f"its preparation ({task.name}) failed")

    def finished(self, task: PackedTask, started: float, future: Future) -> None:
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
        elif error is not None:  # a failing cell must not stop the others
            self.fail_cell(task, f"{type(error).__name__}: {error}")
        else:
            self.report(timing_line(future.result()))
            self.bar.update(1)

    def drain(
        self,
        pool: ProcessPoolExecutor,
        width: int,
        runner: TaskRunner,
        args: tuple[str, str | None, int],
        suspects_only: bool = False,
    ) -> tuple[bool, list[PackedTask], int]:
        """Run queued tasks, ``width`` at a time (only those a dead pool interrupted, with ``suspects_only``),
        until none is left or the pool dies. Returns whether it died, the tasks running then, and how many
        tasks this pool finished."""
        running: dict[Future, tuple[PackedTask, float]] = {}
        done_here = 0

        def settle(futures: Any) -> None:  # hand over what finished normally, even as the pool breaks
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
            if not running:  # nothing may start: the suspects are done, or only cells whose preparation never ran
                if not suspects_only:  # cannot happen, but never drop cells silently
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
            if finished_here == 0:  # the pool died before doing anything: new workers would too
                for task in self.queue:
                    if task.prepares is None:
                        self.fail_cell(task, "the worker processes could not start")
                self.queue.clear()
            else:  # an idle worker died (killed for memory between tasks): new workers, no task to blame
                self.report("a worker died between tasks; new workers take the queue")
            return
        again = []
        for task in interrupted:
            task.deaths += 1
            if task.deaths <= WORKER_DEATHS_ALLOWED or len(interrupted) > 1:  # several running: the cause is unknown
                again.append(task)
            elif task.prepares is not None:
                self.preparation_failed(task, "its worker died every time")
            else:
                self.fail_cell(task, "its worker died every time (out of memory?)")
        self.queue = again + self.queue
        self.report(f"a worker died; {len(again)} interrupted task(s) restart, one at a time, in new workers")


def run_packed(
    cells: list[CellPlan],
    root: Path,
    data_root: str | None,
    checkpoint_every: int,
    workers: int,
    report: Callable[[str], None] = print,
    runner: TaskRunner = run_task,
) -> list[str]:
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
            pool = ProcessPoolExecutor(
                width, mp_context=context, initializer=_worker_init, initargs=(threads, os.getpid())
            )
            try:
                died, interrupted, finished_here = state.drain(pool, width, runner, args, suspects_only=suspects)
            except KeyboardInterrupt:  # stop the workers now (their cells resume from checkpoints on a re-run)
                stop_workers(pool)
                raise
            pool.shutdown(wait=True)
            if died:
                state.requeue(interrupted, finished_here)
    return state.failures


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's workers without waiting for their tasks."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def packing_width(requested: int, per_cell_gb: float = 2.0) -> int:
    """How many cells may share this machine's GPU: ``requested``, fewer when its free memory cannot give each
    ``per_cell_gb``; any number on a CPU-only machine (they share its threads instead)."""
    if requested <= 1 or not torch.cuda.is_available():
        return max(requested, 1)
    free_gb = torch.cuda.mem_get_info()[0] / 2**30
    return max(1, min(requested, int(free_gb // per_cell_gb)))
