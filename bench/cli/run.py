"""``python -m bench.run matrices/<name>.yaml``: expand a matrix, run the missing cells, rebuild its table.

Finished cells (``results/<matrix>/<profile>/<cell id>/result.json``) are skipped, so re-running the same
command after an interruption does only the missing work.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
from pathlib import Path

import torch

from bench.data.info import dataset_info
from bench.data.loaders import DatasetNotFoundError
from bench.execution.base import EXECUTORS, ExecutorError
from bench.experiment.matrix import Cell, MatrixError, load_matrix
from bench.experiment.store import (
    RecordCheck,
    ResultsFolderError,
    check_record,
    clean_old_temps,
    inside,
    move_aside,
    probe_writable,
    write_matrix_info,
    write_plan,
)
from bench.experiment.tasks import cell_fingerprint, data_md5, load_cell_data
from bench.reporting.layouts import LAYOUTS
from bench.reporting.tables import build_report


def select(cells: list[Cell], only: list[str] | None) -> list[Cell]:
    """Cells whose id matches any ``--only`` glob (all when none given)."""
    if not only:
        return cells
    return [c for c in cells if any(fnmatch.fnmatch(c.id, pat) or pat in c.id for pat in only)]


def results_root(base: Path, matrix: str, profile: str) -> Path:
    return base / matrix / profile


def estimate_cost(cell: Cell) -> tuple[float, str]:
    """The cell's matching work as its method states it (``Method.cost``); evaluation-only cells have none."""
    from methods.components import create_method

    if cell.task == "evaluate":
        return 0.0, f"evaluate {cell.source} on {cell.eval_archs[0]}"
    method = create_method(cell.method, cell.dataset, cell.ipc, cell.engine_overrides())
    return method.cost(cell.budget(), cell.ipc, dataset_info(cell.dataset).classes)


def check_layout(name: str) -> None:
    """The matrix's ``layout:`` must name a registered table layout (MatrixError otherwise)."""
    if name not in LAYOUTS:
        raise MatrixError(f"layout = {name!r}; {LAYOUTS.unknown_message(name).split('; ', 1)[1]}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("matrix", help="path to a matrix YAML file")
    p.add_argument("-p", "--profile", default=None, help="profile of the matrix (e.g. mini, paper)")
    p.add_argument("--results", default="results", help="results folder (default: results/)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: $DREAMBENCH_DATA or ./data)")
    p.add_argument("--only", action="append", help="run only cells whose id matches (glob or substring)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their cost, run nothing")
    p.add_argument("--executor", default=None, choices=EXECUTORS.names(), help="where cells run (default: local)")
    p.add_argument("--resume", action="store_true", help="re-submit failed cells (Slurm)")
    p.add_argument("--workers", type=int, default=None,
                   help="local executor: run this many cells at once, one process each (default: launcher.workers, 1)")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the table at the end")
    p.add_argument("--keep-stale", action="store_true",
                   help="keep finished cells whose settings changed since (default: move them aside and recompute)")
    return p


def plan(cells: list[Cell], root: Path, fingerprints: dict[str, str], keep_stale: bool,
         data_md5s: dict[str, str] | None = None) -> tuple[list[Cell], dict[str, RecordCheck]]:
    """Which cells still need computing: missing, corrupt, and stale ones (unless kept). With ``data_md5s``
    (cell id -> md5 of the data it would use now), a record made from other data is stale too."""
    checks = {c.id: check_record(root, c.id, fingerprints[c.id]) for c in cells}
    for cell_id, md5 in (data_md5s or {}).items():
        check = checks[cell_id]
        used = check.record.get("provenance", {}).get("dataset_md5") if check.state == "done" else None
        if check.state == "done" and used != md5:
            checks[cell_id] = RecordCheck("stale", f"{root / cell_id}: computed on other data (md5 {used} != {md5})",
                                          check.record)
    pending = [c for c in cells if checks[c.id].state in ("missing", "corrupt") or
               (checks[c.id].state == "stale" and not keep_stale)]
    return pending, checks


def preflight(cells: list[Cell], root: Path, data_root: str | None) -> dict[str, str]:
    """Before any work: every dataset is present and has ``ipc`` images per class, and the results folder takes
    a file. Returns each cell's data md5. Raises MatrixError, DatasetNotFoundError or ResultsFolderError."""
    md5s = {}
    for cell in cells:
        data, used = load_cell_data(cell, data_root)
        smallest = int(torch.bincount(data.train_labels, minlength=data.num_classes).min())
        if cell.ipc > smallest:
            raise MatrixError(f"ipc {cell.ipc} of cell {cell.id} exceeds the {smallest} training images of the "
                              f"smallest class of {used}; allowed: ipc <= {smallest}")
        md5s[cell.id] = data_md5(data)
    probe_writable(root)
    return md5s


def settle(pending: list[Cell], checks: dict[str, RecordCheck], root: Path, keep_stale: bool,
           fingerprints: dict[str, str]) -> None:
    """Move corrupt and (unless kept) stale cells aside, saying so; record the matrix's plan."""
    for cell in pending:
        check = checks[cell.id]
        if check.state in ("corrupt", "stale"):
            target = move_aside(root, cell.id, check.state)
            print(f"{check.state}: {check.reason}; moved to {target} and computing the cell again")
    clean_old_temps(root)
    kept = {cid: ch.record["fingerprint"] for cid, ch in checks.items() if ch.state == "stale" and keep_stale}
    for cid in kept:
        print(f"kept stale (--keep-stale): {checks[cid].reason}")
    write_plan(root, {**fingerprints, **kept})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        matrix = load_matrix(args.matrix, args.profile)
        cells = select(matrix.cells, args.only)
        if not cells:
            raise MatrixError(f"--only {args.only} matches no cell of {matrix.name!r}")
        executor_name = args.executor or matrix.launcher.executor
        if executor_name not in EXECUTORS:
            raise MatrixError(f"launcher.executor = {executor_name!r}; allowed: {', '.join(EXECUTORS.names())}")
        root = inside(Path(args.results), results_root(Path(args.results), matrix.name, matrix.profile))
        fingerprints = {c.id: cell_fingerprint(c) for c in matrix.cells}
        check_layout(matrix.layout)
    except (MatrixError, ResultsFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pending, checks = plan(cells, root, fingerprints, args.keep_stale)
    if args.dry_run:
        print(f"{matrix.name} [{matrix.profile}]: {len(cells)} cells, {len(cells) - len(pending)} done, {len(pending)} to run -> {root}")
        total = 0.0
        for c in cells:
            state = "todo" if checks[c.id].state == "missing" else checks[c.id].state
            units, text = estimate_cost(c)
            total += units if c in pending else 0.0
            print(f"  {state}  {c.id}  ({text})")
        print(f"estimated matching work still to do: {total / 1e6:.2f}M images through the network "
              f"({len(pending)} cells; plus evaluation)")
        return 0
    try:
        md5s = preflight(cells, root, args.data_root)
        launcher = matrix.launcher if args.workers is None else dataclasses.replace(matrix.launcher, workers=args.workers)
        if launcher.workers < 1:
            raise MatrixError(f"--workers {launcher.workers}; allowed: an integer >= 1")
        executor = EXECUTORS.get(executor_name)(root, args.data_root, launcher)
    except (MatrixError, DatasetNotFoundError, ResultsFolderError, ExecutorError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pending, checks = plan(cells, root, fingerprints, args.keep_stale, md5s)
    settle(pending, checks, root, args.keep_stale, fingerprints)
    write_matrix_info(root, {"name": matrix.name, "profile": matrix.profile, "layout": matrix.layout})
    print(f"{matrix.name} [{matrix.profile}]: {len(pending)} of {len(cells)} cells to run -> {root}")
    try:
        failures = executor.run(pending, resume=args.resume)
    except (DatasetNotFoundError, ExecutorError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.no_report:
        try:
            print(build_report(root).markdown)
        except Exception as err:   # the failure summary below must still be printed
            print(f"report not rebuilt: {type(err).__name__}: {err}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} cell(s) failed: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
