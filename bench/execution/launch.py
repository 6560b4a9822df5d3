"""Before any cell runs: which cells a run takes, which still need computing, the checks that stop a run
before work, and the bookkeeping of the results folder (corrupt or stale records moved aside, the plan file)."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import torch

from bench.data.loaders import ImageDataset
from bench.experiment.matrix import Cell, MatrixError
from bench.experiment.plan import CellPlan, load_data
from bench.experiment.store import (
    SET_FILE,
    RecordCheck,
    check_record,
    clean_old_temps,
    move_aside,
    probe_writable,
    restore_set_aside_cell,
    write_plan,
)
from bench.experiment.tasks import data_md5


def select(cells: list[Cell], only: list[str] | None) -> list[Cell]:
    """Cells whose id matches any ``--only`` glob (all when none given)."""
    if not only:
        return cells
    if any(not pat.strip() for pat in only):  # '' is in every id: it would select everything, silently
        raise MatrixError(f"--only {only!r} holds an empty pattern; allowed: a glob or part of a cell id")
    return [c for c in cells if any(fnmatch.fnmatch(c.id, pat) or pat in c.id for pat in only)]


def results_root(base: Path, matrix: str, profile: str) -> Path:
    return base / matrix / profile


def classify(
    plans: list[CellPlan], root: Path, keep_stale: bool, data_md5s: dict[str, str] | None = None
) -> tuple[list[CellPlan], dict[str, RecordCheck]]:
    """Which cells still need computing: missing, corrupt, and stale ones (unless kept). With ``data_md5s``
    (cell id -> md5 of the data it would use now), a record made from other data is stale too."""
    checks = {p.id: check_record(root, p.id, p.fingerprint) for p in plans}
    for cell_id, md5 in (data_md5s or {}).items():
        check = checks[cell_id]
        used = check.record.provenance.get("dataset_md5") if check.state == "done" and check.record else None
        if check.state == "done" and used != md5:
            checks[cell_id] = RecordCheck(
                "stale", f"{root / cell_id}: computed on other data (md5 {used} != {md5})", check.record
            )
    for plan in plans:  # an evaluation cell reads its source's stored set: a finished source without it is redone
        source = plan.cell.source if plan.cell.task == "evaluate" else None
        if source in checks and checks[source].state == "done" and checks[plan.id].state != "done":
            stored = root / source / SET_FILE
            if not stored.is_file():
                checks[source] = RecordCheck("corrupt", f"{stored}: missing, and {plan.id} evaluates it")
        mine = checks[plan.id]
        if source in checks and checks[source].state == "done" and mine.state == "done":  # the set it evaluated
            source_record, record = checks[source].record, mine.record
            evaluated = record.provenance.get("set_sha256") if record else None
            now = source_record.provenance.get("set_sha256") if source_record else None
            if evaluated and now and evaluated != now:
                checks[plan.id] = RecordCheck(
                    "stale",
                    f"{root / plan.id}: evaluated another set than {source} holds now (a recomputed source)",
                    record,
                )
    pending = [
        p
        for p in plans
        if checks[p.id].state in ("missing", "corrupt") or (checks[p.id].state == "stale" and not keep_stale)
    ]
    return pending, checks


def preflight(plans: list[CellPlan], root: Path, data_root: str | None) -> dict[str, str]:
    """Before any work: every cell's data has ``ipc`` images per class, and the results folder takes a file.
    Returns each cell's data md5. Raises MatrixError or ResultsFolderError."""
    md5s = {plan.id: data_md5(data) for plan, data in check_class_sizes(plans, data_root)}
    probe_writable(root)
    return md5s


def check_class_sizes(plans: list[CellPlan], data_root: str | None) -> list[tuple[CellPlan, ImageDataset]]:
    """Every plan's data has ``ipc`` training images in its smallest class (MatrixError otherwise); returns each
    plan with its loaded data."""
    checked = []
    for plan in plans:
        data = load_data(plan.data_used, data_root, plan.cell.max_per_class)
        smallest = int(torch.bincount(data.train_labels, minlength=data.num_classes).min())
        if plan.cell.ipc > smallest:
            pool = plan.cell.max_per_class
            kept = f" (max_per_class keeps {pool} per class)" if pool is not None and pool <= smallest else ""
            raise MatrixError(
                f"ipc {plan.cell.ipc} of cell {plan.id} exceeds the {smallest} training images of the "
                f"smallest class of {plan.data_used}{kept}; allowed: ipc <= {smallest}"
                + (", or a larger max_per_class" if kept else "")
            )
        checked.append((plan, data))
    return checked


def settle(
    pending: list[CellPlan],
    checks: dict[str, RecordCheck],
    root: Path,
    keep_stale: bool,
    fingerprints: dict[str, str],
    data_md5s: dict[str, str] | None = None,
) -> list[CellPlan]:
    """Move corrupt and (unless kept) stale cells aside, saying so; put back a cell finished under these settings
    that another run set aside; record the matrix's plan. Returns the cells still to compute."""
    still = []
    running = {p.id for p in pending}
    for plan in pending:
        check = checks[plan.id]
        source = plan.cell.source if plan.cell.task == "evaluate" else None
        source_check = check_record(root, source, fingerprints.get(source)) if source else None
        if source and source not in running and source_check is not None and source_check.state != "done":
            print(f"not run: {plan.id}, since its source {source} is not finished under these settings (run it too)")
            continue
        source_set = (
            source_check.record.provenance.get("set_sha256")
            if source_check is not None and source_check.state == "done" and source_check.record is not None
            else None
        )
        if check.state in ("corrupt", "stale"):
            target = move_aside(root, plan.id, check.state)
            print(f"{check.state}: {check.reason}; moved to {target}")
        other_settings = check.record is not None and check.record.fingerprint != plan.fingerprint
        restored = (  # only a cell that is absent, corrupt or of other settings: stale by data or set is redone
            restore_set_aside_cell(root, plan.id, plan.fingerprint, (data_md5s or {}).get(plan.id), source_set)
            if (check.state in ("missing", "corrupt") or other_settings) and (source is None or source_set)
            else None
        )
        if restored is not None:
            print(f"restored {plan.id} from {restored}: it was finished under these settings")
            checks[plan.id] = check_record(root, plan.id, plan.fingerprint)
        else:
            still.append(plan)
    kept_stale = [
        cid
        for cid, ch in checks.items()
        if ch.state == "stale"
        and keep_stale
        and cid in fingerprints
        and ch.record is not None
        and ch.record.fingerprint != fingerprints[cid]
    ]
    for cid in kept_stale:  # kept, unless a result of these very settings is aside: then that one is put back
        target = move_aside(root, cid, "stale")
        restored = restore_set_aside_cell(root, cid, fingerprints[cid], (data_md5s or {}).get(cid))
        if restored is None:
            os.replace(target, root / cid)
        else:
            print(f"restored {cid} from {restored}: it was finished under these settings ({target} kept)")
            checks[cid] = check_record(root, cid, fingerprints[cid])
    clean_old_temps(root)
    kept = {
        cid: ch.record.fingerprint
        for cid, ch in checks.items()
        if ch.state == "stale" and keep_stale and ch.record is not None
    }
    for cid in kept:
        print(f"kept stale (--keep-stale): {checks[cid].reason}")
    write_plan(root, {**fingerprints, **kept})
    return still
