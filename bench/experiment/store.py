"""Where a cell's results live, written atomically so an interrupted run never leaves half a cell."""
from __future__ import annotations

import glob
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from bench.core.files import atomic_write_text, file_lock, follow_umask
from bench.data.loaders import file_digest

RESULT_FILE = "result.json"
SET_FILE = "synthetic.pt"


PLAN_FILE = ".cells.json"      # the matrix's cells and their settings fingerprints, written before any work
MATRIX_FILE = ".matrix.json"   # the matrix's name, profile and table layout (what the report draws)
ASIDE_DIR = ".aside"           # corrupt or stale cells moved out of the way (never deleted)
LOCK_DIR = ".locks"


class ResultsFolderError(OSError):
    """The results folder cannot be used (not writable, or a path would leave it)."""


def inside(root: Path, path: Path) -> Path:
    """``path`` if it lies under ``root`` (after resolving links and '..'), else ResultsFolderError."""
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        raise ResultsFolderError(f"refusing to write {path}: it is outside the results folder {root}")
    return path


def cell_dir(root: Path, cell_id: str) -> Path:
    return inside(root, root / cell_id)


@dataclass
class RecordCheck:
    """What a cell folder holds: 'missing', 'done', 'corrupt' (unreadable or invalid) or 'stale' (other settings)."""

    state: str
    reason: str = ""
    record: dict[str, Any] | None = None


def _accuracy_problem(values: Any, what: str, archs: Any) -> str | None:
    if not isinstance(values, dict) or (not values and archs):
        return f"{what} missing or empty"
    for arch, accs in values.items():
        if not isinstance(accs, list) or not accs:
            return f"{what}[{arch!r}] is not a non-empty list"
        for a in accs:
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or not 0.0 <= a <= 100.0:
                return f"{what}[{arch!r}] holds {a!r}, not a finite accuracy in [0, 100]"
    return None


def validate_record(record: Any, cell_id: str) -> str | None:
    """The first problem of a result record, or None: schema, accuracies, and its cell block names its folder."""
    if not isinstance(record, dict):
        return "not a JSON object"
    cell = record.get("cell")
    if not isinstance(cell, dict) or cell.get("id") != cell_id:
        named = cell.get("id") if isinstance(cell, dict) else None
        return f"its cell block names {named!r}, not its folder {cell_id!r}"
    archs = cell.get("eval_archs")   # a distil-only cell (separate evaluation) evaluates on none
    problem = _accuracy_problem(record.get("accuracies"), "accuracies", archs)
    for optional in ("best_accuracies", "max_during_distillation"):
        if problem is None and optional in record:
            problem = _accuracy_problem(record[optional], optional, archs if optional == "best_accuracies" else None)
    if problem is None and not isinstance(record.get("fingerprint"), str):
        problem = "no settings fingerprint"
    return problem


def check_record(root: Path, cell_id: str, fingerprint: str | None = None) -> RecordCheck:
    """Read and validate ``<root>/<cell_id>/result.json``; with ``fingerprint``, also compare the settings."""
    path = root / cell_id / RESULT_FILE
    if not path.is_file():
        return RecordCheck("missing")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return RecordCheck("corrupt", f"{path}: unreadable ({type(err).__name__})")
    problem = validate_record(record, cell_id)
    if problem:
        return RecordCheck("corrupt", f"{path}: {problem}")
    if fingerprint is not None and record["fingerprint"] != fingerprint:
        return RecordCheck("stale", f"{path}: computed with other settings (fingerprint {record['fingerprint']} != {fingerprint})", record)
    return RecordCheck("done", "", record)


def move_aside(root: Path, cell_id: str, why: str) -> Path:
    """Move a corrupt or stale cell folder to ``.aside/`` (kept for inspection, out of every table)."""
    target = inside(root, root / ASIDE_DIR / f"{cell_id}.{why}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(root / cell_id, target)
    return target


def write_cell(root: Path, cell_id: str, result: dict[str, Any], synthetic: dict[str, Any] | None) -> Path:
    """Write every file into a temporary folder, then rename it into place in one step.

    The stored set's sha256 goes into the record's provenance, so a table traces to the exact set.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = cell_dir(root, cell_id)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cell_id}.", dir=root))
    try:
        follow_umask(tmp, directory=True)
        if synthetic is not None:
            torch.save(synthetic, tmp / SET_FILE)
            result = {**result, "provenance": {**result.get("provenance", {}), "set_sha256": file_digest(tmp / SET_FILE, "sha256")}}
        (tmp / RESULT_FILE).write_text(json.dumps(result, indent=1, default=str))
        if final.exists():          # a corrupt/stale folder the caller chose to replace, or a half folder
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clean_leftovers(folder: Path, name: str) -> None:
    """Remove what a killed atomic write of ``name`` left in ``folder`` (``.<name>.<random>`` temp files/folders).
    Call it only while holding the lock that guards ``name``."""
    for leftover in folder.glob(f".{glob.escape(name)}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def clean_old_temps(root: Path, older_than_s: float = 600.0) -> None:
    """Remove temporary files of killed ``atomic_write_text`` calls on the folder's shared files (tables, plan,
    job list, error logs). Only old ones: a fresh one may belong to a write in progress."""
    cutoff = time.time() - older_than_s
    shared = ("table.md", "table.tex", "table_best.md", "table_best.tex", "table_max-during.md", "table_max-during.tex", PLAN_FILE, MATRIX_FILE, ".jobs.json")
    candidates = [p for name in shared for p in root.glob(f".{glob.escape(name)}.*")]
    candidates += list((root / ".errors").glob(".*.txt.*")) + list(root.glob(".probe.*"))
    for path in candidates:
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


def cell_lock(root: Path, cell_id: str, wait: bool = False):
    """The lock one run holds while it computes a cell, so two runs of one results folder never both do."""
    return file_lock(inside(root, root / LOCK_DIR / f"{cell_id}.lock"), wait)


def probe_writable(root: Path) -> None:
    """Create the results folder and a file in it now, so an unwritable or full disk stops the run before any work."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=root)
        try:
            os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ResultsFolderError(f"results folder {root} is not writable ({err.strerror or type(err).__name__})") from None


def write_plan(root: Path, fingerprints: dict[str, str]) -> None:
    """Record which cells make up the matrix now (and their settings), replacing the previous plan: a cell the
    matrix no longer has is no longer reported, though its folder stays."""
    with file_lock(root / LOCK_DIR / "plan.lock"):
        atomic_write_text(root / PLAN_FILE, json.dumps(fingerprints, indent=1, sort_keys=True))


def write_matrix_info(root: Path, info: dict[str, str]) -> None:
    """Record which matrix, profile and table layout the folder holds (the report reads the layout here)."""
    atomic_write_text(root / MATRIX_FILE, json.dumps(info, indent=1, sort_keys=True))


def read_matrix_info(root: Path) -> dict[str, str]:
    """What :func:`write_matrix_info` wrote; {} for folders made before it existed or unreadable files."""
    try:
        info = json.loads((root / MATRIX_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in info.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(info, dict) else {}


def read_plan(root: Path) -> dict[str, str] | None:
    path = root / PLAN_FILE
    if not path.is_file():
        return None
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None


def read_results(root: Path, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The valid result records of the cells in ``root``: the cells its plan lists (else its direct sub-folders).

    Corrupt records and records whose settings differ from the plan are left out with one warning line each;
    nested or stray copies (``X.bak/``, ``old/X/``) are never read, since only planned cell folders are.
    """
    root = Path(root)
    plan = read_plan(root)
    ids = sorted(plan) if plan is not None else sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    records = []
    for cell_id in ids:
        check = check_record(root, cell_id, plan.get(cell_id) if plan is not None else None)
        if check.state == "done":
            records.append(check.record)
        elif check.state != "missing" and warn is not None:
            warn(f"left out ({check.state}): {check.reason}")
    if plan is not None and warn is not None:
        dropped = sorted(p.parent.name for p in root.glob("*/" + RESULT_FILE) if p.parent.name not in plan)
        if dropped:
            warn(f"left out: {len(dropped)} folder(s) with a result that the matrix's current plan does not list "
                 f"(cells it no longer has, or copies) ({', '.join(dropped[:3])}"
                 f"{', ...' if len(dropped) > 3 else ''})")
    return records
