"""``dreambench run`` / ``python -m bench.run matrices/<name>.yaml``: expand a matrix, run the missing cells,
rebuild its table.

Finished cells (``results/<matrix>/<profile>/<cell id>/result.json``) are skipped, so re-running the same
command after an interruption does only the missing work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.cli.parser import OneLineParser
from bench.cli.signals import stopped
from bench.core.files import describe_os_error
from bench.core.safe_yaml import YamlError, load_yaml_text
from bench.data.loaders import DatasetNotFoundError
from bench.execution.base import EXECUTORS, ExecutorError
from bench.execution.cost import CellCost, calibration_line, cell_cost, hours_by_method
from bench.execution.launch import classify, preflight, results_root, select, settle
from bench.experiment.matrix import SECTIONS, Cell, Matrix, MatrixError, load_matrix
from bench.experiment.plan import CellPlan, load_data, plan_cells
from bench.experiment.store import (
    ResultsFolderError,
    check_own_files,
    check_record,
    claim_folder,
    inside,
    read_plan,
    write_matrix_info,
)
from bench.reporting.layouts import LAYOUTS, ROWS_KEPT_APART, pooled_fields
from bench.reporting.tables import build_report


def check_layout(name: str, cells: list[Cell] | None = None) -> None:
    """The matrix's ``layout:`` must name a registered table layout, and its cells may vary only in what that
    layout keeps apart in its rows (a variant or a second IPC pooled into one row would be a wrong number)."""
    if name not in LAYOUTS:
        raise MatrixError(f"layout = {name!r}: {LAYOUTS.unknown_message(name)}")
    values: dict[str, set[object]] = {}
    for cell in cells or []:
        for field in ("method", "variant", "arch", "dataset", "ipc"):
            values.setdefault(field, set()).add(getattr(cell, field))
        values.setdefault("eval_arch", set()).update(cell.eval_archs)
    pooled = pooled_fields(name, values)
    if pooled:
        field, shown = pooled[0]
        raise MatrixError(
            f"layout {name} keeps rows apart only by {', '.join(ROWS_KEPT_APART[name])}, but this matrix's cells "
            f"vary in {field} ({', '.join(shown[:4])}{', ...' if len(shown) > 4 else ''}), which it would pool "
            f"into one row; allowed: one {field} per matrix with this layout, or layout table1"
        )


def print_notes(notes: list[str]) -> None:
    """A matrix's notes: its deprecation notes as one line, every other note (a setting that changes nothing)
    in full."""
    deprecated = [n for n in notes if "deprecated" in n]
    if deprecated:
        more = f" (and {len(deprecated) - 1} more like it)" if len(deprecated) > 1 else ""
        print(deprecated[0] + more, file=sys.stderr)
    for note in notes:
        if note not in deprecated:
            print(note, file=sys.stderr)


def parse_set(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs as settings (``--set evaluation.epochs=5`` or the flat ``--set eval_epochs=5``;
    ``--set engine.objective.feature_weight=1`` for one field of the objective); values are read as YAML scalars
    (``4``, ``0.1``, ``null``)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise MatrixError(f"--set {pair!r}; allowed: key=value, e.g. --set budget.iterations=2")
        if not text.strip():  # e.g. an unset shell variable: never silently the preset's value
            raise MatrixError(f"--set {pair!r} has no value; allowed: a value, or null to unset the key")
        try:
            value = load_yaml_text(text, f"--set {key.strip()}")
        except YamlError as err:
            raise MatrixError(f"--set {pair!r}: {err}") from None
        if isinstance(value, (dict, list)):
            raise MatrixError(f"--set {pair!r}: the value must be a single number, string, true/false or null")
        section, dot, name = key.strip().partition(".")
        if not dot and section in SECTIONS:
            raise MatrixError(
                f"--set {pair!r}: {section!r} is a section, not a setting; allowed: {section}.<setting>=<value>, "
                f"e.g. --set {section}.{next(iter(SECTIONS[section]))}=..."
            )
        if dot and section not in SECTIONS:
            hint = " (launcher settings: --workers, --executor, or the matrix's launcher: section)"
            raise MatrixError(
                f"--set {key.strip()!r}: {section!r} is not a section of cell settings"
                f"{hint if section == 'launcher' else ''}; allowed sections: {', '.join(SECTIONS)}"
            )
        if dot and section == "engine" and name.startswith("objective."):  # one field of the objective mapping
            objective = out.setdefault(section, {}).setdefault("objective", {})
            if not isinstance(objective, dict):
                raise MatrixError(f"--set {pair!r}: engine.objective is already set as a whole; allowed: one form")
            objective[name.partition(".")[2]] = value
        elif dot:
            out.setdefault(section, {})[name] = value
        else:
            out[key.strip()] = value
    return out


OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("-p", "--profile"), {"default": None, "help": "profile of the matrix (e.g. mini, paper; default: the matrix's)"}),
    (("--results",), {"default": "results", "help": "results folder (default: results/)"}),
    (("--data-root",), {"default": None, "help": "dataset folder (default: $DREAMBENCH_DATA or ./data)"}),
    (("--download",), {"action": "store_true", "help": "fetch missing datasets with torchvision (MNIST, "
                                                        "FashionMNIST, SVHN, CIFAR; never by default)"}),
    (("--only",), {"action": "append", "help": "run only cells whose id matches (glob or substring; repeatable)"}),
    (("--set",), {"action": "append", "metavar": "KEY=VALUE",
                  "help": "a setting for every cell, checked like the matrix's and recorded (repeatable), e.g. "
                          "--set budget.iterations=2 --set evaluation.epochs=5 for a smoke run"}),
    (("--max-cells",), {"type": int, "default": None, "metavar": "N",
                        "help": "refuse a matrix that expands to more than N cells (default 100000, or "
                                "$DREAMBENCH_MAX_CELLS)"}),
    (("--dry-run",), {"action": "store_true",
                      "help": "check the matrix and its data, list the cells and their estimated cost, run nothing"}),
    (("--executor",), {"default": None, "choices": EXECUTORS.names(), "help": "where cells run (default: local)"}),
    (("--resume",), {"action": "store_true", "help": argparse.SUPPRESS}),  # refused in main with what to do instead
    (("--workers",), {"type": int, "default": None, "help": "local executor: run this many cells at once, one "
                                                            "process each (default: launcher.workers, 1)"}),
    (("--no-report",), {"action": "store_true", "help": "do not rebuild the table at the end"}),
    (("--keep-stale",), {"action": "store_true", "help": "keep finished cells whose settings changed since "
                                                         "(default: move them aside and recompute)"}),
]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    summary = " ".join(__doc__.split("\n\n")[0].split()).split(": ", 1)[1]
    p = OneLineParser(prog="dreambench run", description=summary)
    p.add_argument("matrix", help="path to a matrix YAML file (see `dreambench ls matrices`)")
    for flags, options in OPTIONS:
        p.add_argument(*flags, **options)
    return p


def plan_matrix(
    matrix: Matrix, selected_ids: set[str], root: Path, data_root: str | None
) -> tuple[list[CellPlan], dict[str, str]]:
    """Plans of the selected cells (their data loaded and checked; every missing dataset named at once) and the
    fingerprints the folder's plan file lists: every matrix cell whose data is at hand, and, for the others,
    what the previous plan listed."""
    chosen = [c for c in matrix.cells if c.id in selected_ids]
    plans = plan_cells(chosen, data_root)
    fingerprints = {p.id: p.fingerprint for p in plans}
    check_own_files(root)
    previous = read_plan(root) or {}
    others = [c for c in matrix.cells if c.id not in selected_ids]
    for cell in others:
        try:
            fingerprints[cell.id] = plan_cells([cell], data_root)[0].fingerprint
        except DatasetNotFoundError:
            if cell.id in previous:
                fingerprints[cell.id] = previous[cell.id]
    return plans, fingerprints


def dry_run(matrix: Matrix, plans: list[CellPlan], root: Path, keep_stale: bool, data_root: str | None) -> None:
    """The cells, their state and cost, and the hours still to go per method and in total."""
    pending, checks = classify(plans, root, keep_stale)
    print(
        f"{matrix.name} [{matrix.profile}]: {len(plans)} cells, {len(plans) - len(pending)} done, "
        f"{len(pending)} to run -> {root}"
    )
    costs: dict[str, list[CellCost]] = defaultdict(list)
    for plan in plans:
        state = "todo" if checks[plan.id].state == "missing" else checks[plan.id].state
        _, text = plan.cost()
        data = load_data(plan.data_used, data_root, plan.cell.max_per_class)
        if plan in pending:
            costs[plan.cell.method].append(cell_cost(plan, len(data.train_labels), len(data.test_labels)))
        used = "" if plan.data_used == plan.cell.dataset else f" [data: {plan.data_used}]"
        print(f"  {state}  {plan.id}{used}  ({text})")
    hours = hours_by_method(dict(costs))
    print("estimated hours still to do (CPU / GPU), evaluation, feature networks and matching included:")
    for method, (cpu, gpu) in hours.items():
        print(f"  {method:>24s}: {cpu:9.2f} CPU-h  {gpu:8.2f} GPU-h")
    print(f"  ({calibration_line()})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.download:
        os.environ["DREAMBENCH_DOWNLOAD"] = "1"  # read by every data load, worker processes included
    done_before: int | None = None
    total = 0
    root: Path | None = None
    try:
        try:
            if args.resume:
                raise MatrixError(
                    "--resume is not needed: every run keeps the finished cells and runs again the ones that failed "
                    "or did not finish; re-run the same command without it"
                )
            for flag, value in (("matrix", args.matrix), ("--results", args.results), ("--data-root", args.data_root)):
                if value is not None and (not value.isprintable() or (flag == "--data-root" and not value.strip())):
                    raise MatrixError(f"{flag} {value!r:.80}; allowed: a path, without control characters")
            matrix = load_matrix(args.matrix, args.profile, parse_set(args.set), args.max_cells)
            print_notes(matrix.notes)
            cells = select(matrix.cells, args.only)
            if not cells:
                raise MatrixError(f"--only {args.only} matches no cell of {matrix.name!r}")
            executor_name = args.executor or matrix.launcher.executor
            if not args.results.strip():
                raise MatrixError("--results ''; allowed: a folder name (default: results)")
            if executor_name not in EXECUTORS:
                raise MatrixError(f"launcher.executor = {executor_name!r}: {EXECUTORS.unknown_message(executor_name)}")
            root = inside(Path(args.results), results_root(Path(args.results), matrix.name, matrix.profile))
            check_layout(matrix.layout, matrix.cells)
            plans, fingerprints = plan_matrix(matrix, {c.id for c in cells}, root, args.data_root)
            total = len(plans)
            launcher = (
                matrix.launcher if args.workers is None else dataclasses.replace(matrix.launcher, workers=args.workers)
            )
            if launcher.workers < 1:
                raise MatrixError(f"--workers {launcher.workers}; allowed: an integer >= 1")
            if launcher.workers > 1 and executor_name != "local":
                print(
                    f"note: --workers/launcher.workers is for the local executor; {executor_name} runs one cell per "
                    "job (launcher.cells_per_gpu packs several)",
                    file=sys.stderr,
                )
            if args.dry_run:
                dry_run(matrix, plans, root, args.keep_stale, args.data_root)
                return 0
            md5s = preflight(plans, root, args.data_root)
            executor = EXECUTORS.get(executor_name)(root, args.data_root, launcher)
        except (MatrixError, DatasetNotFoundError, ResultsFolderError, ExecutorError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            with claim_folder(root, fingerprints):
                pending, checks = classify(plans, root, args.keep_stale, md5s)
                pending = settle(pending, checks, root, args.keep_stale, fingerprints, md5s)
                done_before = len(plans) - len(pending)
                write_matrix_info(
                    root,
                    {
                        "name": matrix.name,
                        "profile": matrix.profile,
                        "layout": matrix.layout,
                        "command": shlex.join(["dreambench", "run", *(sys.argv[1:] if argv is None else argv)]),
                    },
                )
                print(f"{matrix.name} [{matrix.profile}]: {len(pending)} of {len(plans)} cells to run -> {root}")
                failures = executor.run(pending)
        except (ResultsFolderError, DatasetNotFoundError, ExecutorError) as err:  # FolderBusyError included
            print(f"error: {err}", file=sys.stderr)
            return 2
        report_failed = False
        if not args.no_report:
            try:
                print(build_report(root).markdown)
            except Exception as err:  # the failure summary below must still be printed
                why = describe_os_error(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
                print(f"error: report not rebuilt (the cells are kept): {why}", file=sys.stderr)
                report_failed = True
        if failures:
            print(f"{len(failures)} cell(s) failed: " + ", ".join(failures), file=sys.stderr)
            return 1
        return 1 if report_failed else 0
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated)
        done = (
            sum(check_record(root, p.id).state == "done" for p in plans) if root and done_before is not None else None
        )
        counted = f"{done} of {total} cells done; " if done is not None else ""
        word, code = stopped(err)
        print(f"\n{word}: {counted}re-run the same command to resume", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
