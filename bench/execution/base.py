"""Where cells run, behind one small interface (``Executor.run(cells) -> failed ids``), chosen by name.

``local`` runs cells in this process (or ``launcher.workers`` at once); ``submitit-local`` and ``slurm`` submit
them as one job array through submitit. The registry names them lazily, so choosing ``local`` never imports
submitit. An executor is added with one ``EXECUTORS.add_lazy`` line here and its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bench.core.registry import Registry
from bench.experiment.plan import CellPlan
from bench.experiment.settings import Launcher

PHASES = (("distill", "continual"), ("evaluate",))  # tasks that must finish before the next phase starts


class ExecutorError(RuntimeError):
    """An executor cannot run (e.g. Slurm unreachable); the message is one line for the user."""


class Executor(Protocol):
    """Runs cells and records each one; returns the ids of the cells that failed."""

    def __init__(self, root: Path, data_root: str | None, launcher: Launcher) -> None: ...

    def run(self, cells: list[CellPlan]) -> list[str]: ...


EXECUTORS: Registry[type[Executor]] = Registry("executor", ExecutorError)
EXECUTORS.add_lazy("local", "bench.execution.local:LocalExecutor")
EXECUTORS.add_lazy("submitit-local", "bench.execution.slurm:SubmititLocalExecutor")
EXECUTORS.add_lazy("slurm", "bench.execution.slurm:SlurmExecutor")
