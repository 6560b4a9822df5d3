"""Run one cell under its lock, with checkpoints, keeping its traceback on failure: what every executor calls."""

from __future__ import annotations

import traceback
from pathlib import Path

from tqdm import tqdm

from bench.core.files import atomic_write_text, clean_leftovers
from bench.experiment.checkpoint import CHECKPOINT_DIR, checkpoint_for
from bench.experiment.plan import CellPlan
from bench.experiment.record import Record
from bench.experiment.store import cell_lock, check_record, move_aside, own_subfolder
from bench.experiment.tasks import run_and_store

ERRORS_DIR = ".errors"


def error_path(root: Path, cell_id: str) -> Path:
    """Where a failed cell's traceback is kept (read by status)."""
    return root / ERRORS_DIR / f"{cell_id}.txt"


def clear_error(root: Path, cell_id: str) -> None:
    """Remove the cell's kept traceback; anything else in its place (a folder) is moved aside as it is."""
    path = error_path(root, cell_id)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        move_aside(root, cell_id, "error-not-a-file", path)


class CellInProgress(RuntimeError):
    """Another run of the same results folder holds this cell's lock: it is computing it now."""


class CellFinishedElsewhere(CellInProgress):
    """Another run finished this cell after this run planned it: nothing was computed here (not a failure)."""


class PhaseBar:
    """A cell's progress bar, one phase at a time (select / distil / evaluate / continual), each with its total,
    so tqdm shows a rate and an ETA; ``bar(done)`` moves the current phase to ``done``."""

    def __init__(self, bar: tqdm, label: str) -> None:
        self.bar, self.label = bar, label

    def phase(self, name: str, total: int | None, unit: str = "it") -> None:
        self.bar.reset(total=total)
        self.bar.unit = unit
        self.bar.set_description_str(f"{self.label} {name}")

    def __call__(self, done: int) -> None:
        self.bar.update(done - self.bar.n)


def run_recorded(
    plan: CellPlan, root: Path, data_root: str | None, checkpoint_every: int, show_iterations: bool = True
) -> Record:
    """Run one cell under its lock, with checkpoints; on failure keep the traceback for ``bench.execution.status``.

    A cell another run is computing raises CellInProgress; one another run has finished meanwhile raises
    CellFinishedElsewhere (a CellInProgress: not a failure) and is not computed again; leftovers of a killed
    earlier attempt are removed first.
    """
    fingerprint, cell = plan.fingerprint, plan.cell
    with cell_lock(root, cell.id) as mine:
        if not mine:
            raise CellInProgress(f"{cell.id} is being computed by another run; skipped here")
        check = check_record(root, cell.id, fingerprint)
        if check.state == "done":  # planned as missing, so another run finished it meanwhile
            raise CellFinishedElsewhere(f"{cell.id} was finished by another run meanwhile; not computed again")
        clean_leftovers(root, cell.id)
        clean_leftovers(root / CHECKPOINT_DIR, f"{cell.id}.pt")
        ckpt = checkpoint_for(root, cell.id, checkpoint_every, fingerprint)
        with tqdm(desc=cell.id, leave=False, mininterval=5, dynamic_ncols=True, disable=not show_iterations) as bar:
            try:
                result = run_and_store(plan, root, data_root, ckpt, progress=PhaseBar(bar, cell.id))
            except Exception:
                own_subfolder(root, ERRORS_DIR)
                clear_error(root, cell.id)
                atomic_write_text(error_path(root, cell.id), traceback.format_exc())
                raise
        ckpt.clear()
        clear_error(root, cell.id)
        return result
