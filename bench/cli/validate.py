"""``dreambench validate matrices/<name>.yaml``: check a matrix, its settings and its data, do no work.

Exit code 0 when every cell could run here; 2 with one line naming the first problem otherwise (every missing
dataset is named at once). Nothing is written.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

from bench.cli.parser import OneLineParser
from bench.cli.run import check_layout, parse_set, print_notes
from bench.data.loaders import DatasetNotFoundError
from bench.execution.base import EXECUTORS
from bench.execution.launch import check_class_sizes, select
from bench.experiment.matrix import Cell, Matrix, MatrixError, load_matrix
from bench.experiment.plan import CellPlan, plan_cells
from bench.experiment.store import ResultsFolderError


def profile_names(matrix: Matrix) -> list[str]:
    """The matrix's profiles, as its file names them."""
    profiles = matrix.raw.get("profiles") or {}
    return [str(p) for p in profiles] if isinstance(profiles, dict) else []


def largest_ipc_at_hand(cells: list[Cell], data_root: str | None) -> list[CellPlan]:
    """For each (dataset, class cap) the cell with the largest IPC whose data is here: what the class-size check
    needs, without planning every cell of a paper-scale profile."""
    largest: dict[tuple[object, ...], Cell] = {}
    for cell in cells:
        key = (cell.dataset, cell.data_fallback, cell.max_per_class)
        if key not in largest or cell.ipc > largest[key].ipc:
            largest[key] = cell
    plans = []
    for cell in largest.values():
        try:
            plans += plan_cells([cell], data_root)
        except DatasetNotFoundError:
            continue  # checked when this profile runs where its data is
    return plans


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="dreambench validate", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("matrix", help="path to a matrix YAML file")
    parser.add_argument("-p", "--profile", default=None, help="profile to check (default: the matrix's)")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: $DREAMBENCH_DATA or ./data)")
    parser.add_argument("--only", action="append", help="check only cells whose id matches (glob or substring)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="settings for every cell, as `run --set`")
    parser.add_argument("--no-data", action="store_true", help="check the matrix and its settings only, not the data")
    args = parser.parse_args(argv)
    os.environ.pop("DREAMBENCH_DOWNLOAD", None)  # validating never downloads
    try:
        matrix = load_matrix(args.matrix, args.profile, parse_set(args.set))
        print_notes(matrix.notes)
        check_layout(matrix.layout, matrix.cells)
        if matrix.launcher.executor not in EXECUTORS:
            executor = matrix.launcher.executor
            raise MatrixError(f"launcher.executor = {executor!r}: {EXECUTORS.unknown_message(executor)}")
        cells = select(matrix.cells, args.only)
        if not cells:
            raise MatrixError(f"--only {args.only} matches no cell of {matrix.name!r}")
        others = [] if args.profile else [p for p in profile_names(matrix) if p != matrix.profile]
        for other in others:  # every profile's settings, so a typo in one that is not the default is found now
            try:
                other_matrix = load_matrix(args.matrix, other, parse_set(args.set))
                other_cells = other_matrix.cells
                check_layout(other_matrix.layout, other_cells)
                if not args.no_data:
                    check_class_sizes(largest_ipc_at_hand(other_cells, args.data_root), args.data_root)
            except MatrixError as err:
                raise MatrixError(f"profile {other!r}: {err}") from None
        checked = "settings" if args.no_data else "settings (and IPCs, on the data here)"
        also = f"; the {checked} of its other profiles ({', '.join(others)}) checked too" if others else ""
        if args.no_data:
            print(f"ok: {matrix.name} [{matrix.profile}]: {len(cells)} cells; data not checked (--no-data){also}")
            return 0
        plans = plan_cells(cells, args.data_root)
        check_class_sizes(plans, args.data_root)
    except (MatrixError, DatasetNotFoundError, ResultsFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    used = Counter(
        p.data_used if p.data_used == p.cell.dataset else f"{p.cell.dataset} -> {p.data_used} (fallback)" for p in plans
    )
    print(
        f"ok: {matrix.name} [{matrix.profile}]: {len(plans)} cells; data: "
        + ", ".join(f"{name} ({n} cells)" for name, n in sorted(used.items()))
        + also
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
