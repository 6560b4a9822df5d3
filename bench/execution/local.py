"""The ``local`` executor: cells in this process one after another, or ``launcher.workers`` at a time."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from bench.execution.base import PHASES
from bench.execution.pool import run_packed
from bench.execution.recorded import CellInProgress, run_recorded
from bench.experiment.plan import CellPlan
from bench.experiment.settings import Launcher
from bench.experiment.tasks import timing_line


class LocalExecutor:
    """Runs cells in this process one after another with a progress bar, or ``launcher.workers`` at a time
    in worker processes."""

    def __init__(self, root: Path, data_root: str | None, launcher: Launcher) -> None:
        self.root, self.data_root, self.launcher = root, data_root, launcher

    def run(self, cells: list[CellPlan]) -> list[str]:
        if self.launcher.workers > 1 and len(cells) > 1:
            failures = []
            for phase in PHASES:  # evaluation cells read the sets their distillation cells store
                todo = [c for c in cells if c.task in phase]
                if todo:
                    failures += run_packed(
                        todo,
                        self.root,
                        self.data_root,
                        self.launcher.checkpoint_every,
                        min(self.launcher.workers, len(todo)),
                        report=tqdm.write,
                    )
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
