"""``python -m bench.run matrices/<name>.yaml``: expand a matrix, run the missing cells, rebuild its table.

Finished cells (``results/<matrix>/<profile>/<cell id>/result.json``) are skipped, so re-running the same
command after an interruption does only the missing work.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from bench.data import DatasetNotFoundError
from bench.executors import EXECUTORS, ExecutorError
from bench.matrix import Cell, MatrixError, load_matrix
from bench.results import is_done


def select(cells: list[Cell], only: list[str] | None) -> list[Cell]:
    """Cells whose id matches any ``--only`` glob (all when none given)."""
    if not only:
        return cells
    return [c for c in cells if any(fnmatch.fnmatch(c.id, pat) or pat in c.id for pat in only)]


def results_root(base: Path, matrix: str, profile: str) -> Path:
    return base / matrix / profile


def estimate_cost(cell: Cell) -> str:
    """A rough unit count for the dry-run plan: networks x image updates x matched images."""
    from methods.components import create_method

    if cell.task == "evaluate":
        return f"evaluate {cell.source} on {cell.eval_archs[0]}"
    method = create_method(cell.method, cell.dataset, cell.ipc, cell.engine_overrides())
    cfg = getattr(method, "config", None)
    if cfg is None:
        return "coreset selection"
    cfg = cfg.with_budget(cell.budget())
    return f"{cfg.iterations} nets x {cfg.steps_per_network} steps x {cfg.batch_real} real/class"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("matrix", help="path to a matrix YAML file")
    p.add_argument("-p", "--profile", default=None, help="profile of the matrix (e.g. mini, paper)")
    p.add_argument("--results", default="results", help="results folder (default: results/)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: $DREAMBENCH_DATA or ./data)")
    p.add_argument("--only", action="append", help="run only cells whose id matches (glob or substring)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their cost, run nothing")
    p.add_argument("--executor", default=None, choices=sorted(EXECUTORS), help="where cells run (default: local)")
    p.add_argument("--resume", action="store_true", help="re-submit failed cells (Slurm)")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the table at the end")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        matrix = load_matrix(args.matrix, args.profile)
        cells = select(matrix.cells, args.only)
        if not cells:
            raise MatrixError(f"--only {args.only} matches no cell of {matrix.name!r}")
        executor_name = args.executor or matrix.launcher.get("executor", "local")
        if executor_name not in EXECUTORS:
            raise MatrixError(f"launcher.executor = {executor_name!r}; allowed: {sorted(EXECUTORS)}")
    except MatrixError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = results_root(Path(args.results), matrix.name, matrix.profile)
    pending = [c for c in cells if not is_done(root, c.id)]
    if args.dry_run:
        print(f"{matrix.name} [{matrix.profile}]: {len(cells)} cells, {len(cells) - len(pending)} done, {len(pending)} to run -> {root}")
        for c in cells:
            state = "done" if c not in pending else "todo"
            print(f"  {state}  {c.id}  ({estimate_cost(c)})")
        return 0
    print(f"{matrix.name} [{matrix.profile}]: {len(pending)} of {len(cells)} cells to run -> {root}")
    try:
        executor = EXECUTORS[executor_name](root, args.data_root, matrix.launcher)
        failures = executor.run(pending, resume=args.resume)
    except (DatasetNotFoundError, ExecutorError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.no_report:
        from bench.report import build_report

        print(build_report(root).markdown)
    if failures:
        print(f"{len(failures)} cell(s) failed: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
