"""Where cells run, behind one small interface (``run(cells) -> failed ids``), chosen by name."""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from bench.matrix import Cell
from bench.results import atomic_write_text

ERRORS_DIR = ".errors"


class ExecutorError(RuntimeError):
    pass


def error_path(root: Path, cell_id: str) -> Path:
    return root / ERRORS_DIR / f"{cell_id}.txt"


class LocalExecutor:
    """Runs cells one after another in this process, with a progress bar."""

    def __init__(self, root: Path, data_root: str | None, launcher: dict[str, Any]) -> None:
        self.root, self.data_root, self.launcher = root, data_root, launcher

    def run(self, cells: list[Cell], resume: bool = False) -> list[str]:
        from bench.cell import run_and_store

        failures = []
        bar = tqdm(cells, desc="cells", unit="cell", dynamic_ncols=True)
        for cell in bar:
            bar.set_postfix_str(cell.id)
            try:
                run_and_store(cell, self.root, self.data_root)
                error_path(self.root, cell.id).unlink(missing_ok=True)
            except Exception as err:  # a failing cell must not stop the others
                if isinstance(err, (KeyboardInterrupt, SystemExit)):
                    raise
                atomic_write_text(error_path(self.root, cell.id), traceback.format_exc())
                tqdm.write(f"cell {cell.id} failed: {type(err).__name__}: {err}")
                failures.append(cell.id)
        return failures


EXECUTORS: dict[str, Callable[..., Any]] = {"local": LocalExecutor}
