"""Machine-readable results: ``results.csv`` and ``results.json`` beside every table, one row per cell x
evaluation network x evaluation run x accuracy kind, with the paper's value and the row's verdict.

Verdicts are computed from the rows themselves (:func:`judge_rows`), so a CSV migrated from an older raw
measurement is judged by the same rule as one written by a run. The schema is documented in docs/results.md;
``pandas.read_csv`` reads the CSV as is.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.files import atomic_write_text
from bench.experiment.record import Record
from bench.learning.provenance import published_spread, row_sets
from bench.reporting.paper import paper_table1, paper_value
from bench.reporting.verdicts import NEUTRAL_SETTINGS, UNPUBLISHED_SETTINGS, PaperValue, judge, pooling_key

COLUMNS = (
    "dataset data_used ipc method variant arch eval_arch seed protocol epochs epochs_from accuracy_kind "
    "run value set settings max_per_class scale machine commit fingerprint cell_id pooled_settings n_sets "
    "group_mean paper paper_spread paper_sets delta verdict verdict_text changed"
).split()
KINDS = ("last", "best", "max-during")
GROUP = (
    "dataset data_used ipc method variant arch eval_arch protocol epochs pooled_settings max_per_class"
).split()  # cells pool only when all of these are equal


def paper_reference(method: str, dataset: str, ipc: int) -> PaperValue | None:
    """The paper's Table I value of a row, with the ± and number of sets of its source where known."""
    value = paper_value(paper_table1(), dataset, ipc, method)
    if value is None:
        return None
    return PaperValue(value, published_spread(method, dataset, ipc), row_sets(method, dataset, ipc))


def changed_settings(settings: dict[str, Any], max_per_class: Any) -> dict[str, str]:
    """What a cell sets away from the method's published configuration (budget, evaluation, engine, data)."""
    changed = {
        k: str(v)
        for k, v in settings.items()
        if k not in NEUTRAL_SETTINGS and k not in UNPUBLISHED_SETTINGS and v is not None
    }
    if max_per_class is not None and not pd.isna(max_per_class):
        changed["max_per_class"] = str(int(max_per_class))
    return changed


def cell_columns(r: Record) -> dict[str, Any]:
    """The columns every row of a record carries: what the cell was, what ran it, and where."""
    return {
        "dataset": r.cell.dataset, "data_used": r.data_used, "ipc": r.cell.ipc, "method": r.cell.method,
        "variant": r.cell.variant, "arch": r.cell.arch, "seed": r.cell.seed,
        "settings": json.dumps(r.cell.settings, sort_keys=True), "scale": r.scale, "machine": r.machine,
        "commit": r.provenance.get("git_commit", "unknown"), "cell_id": r.cell.id,
    }  # fmt: skip


def record_rows(records: list[Record]) -> pd.DataFrame:
    """Every evaluation run of every record as a row, not yet judged."""
    rows = []
    for r in records:
        protocol, cell = r.protocol or {}, cell_columns(r)
        for kind in KINDS:
            for arch, values in r.accuracies_of(kind).items():
                rows.extend(
                    {**cell, "eval_arch": arch, "protocol": protocol.get("name", ""), "epochs": protocol.get("epochs"),
                     "epochs_from": protocol.get("epochs_from", ""), "accuracy_kind": kind, "run": run,
                     "value": value, "set": r.set_id, "max_per_class": r.cell.max_per_class,
                     "fingerprint": r.fingerprint}
                    for run, value in enumerate(values)
                )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS[: COLUMNS.index("pooled_settings")])


def judge_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with their group's verdict: last-epoch rows pooled by :data:`GROUP`, one mean per distinct set,
    judged against the paper by ``bench.reporting.verdicts.judge``; other accuracy kinds are not judged."""
    out = frame.copy()
    for column in COLUMNS[COLUMNS.index("pooled_settings") :]:
        out[column] = None
    out["pooled_settings"] = [pooled_settings(s) for s in out["settings"]]
    last = out[out["accuracy_kind"] == "last"]
    for _, group in last.groupby(GROUP, sort=False, dropna=False):
        first = group.iloc[0]
        means = [statistics.fmean(v) for v in group.groupby("set", sort=False)["value"].apply(list)]
        variant = first["variant"] if isinstance(first["variant"], str) else ""
        paper = (
            paper_reference(first["method"], first["dataset"], int(first["ipc"]))
            if first["data_used"] == first["dataset"] and not variant
            else None
        )
        changed = changed_settings(json.loads(first["settings"] or "{}"), first["max_per_class"])
        verdict = judge(means, paper, changed)
        values = {
            "n_sets": len(means),
            "group_mean": statistics.fmean(means),
            "paper": paper.mean if paper else None,
            "paper_spread": paper.spread if paper else None,
            "paper_sets": paper.sets if paper else None,
            "delta": verdict.delta,
            "verdict": verdict.label,
            "verdict_text": verdict.text,
            "changed": ";".join(f"{k}={v}" for k, v in sorted(changed.items())),
        }
        for column, value in values.items():
            out.loc[group.index, column] = value
    return out


def pooled_settings(settings: str) -> str:
    """The settings that decide what a row estimates (``verdicts.pooling_key``: NEUTRAL_SETTINGS such as
    eval_runs and null values left out), as JSON."""
    moving = pooling_key(json.loads(settings or "{}"), "", None, "", None).settings
    return json.dumps(dict(moving), sort_keys=True)


def results_rows(records: list[Record]) -> pd.DataFrame:
    """The judged rows of a results folder's records (the content of results.csv)."""
    return judge_rows(record_rows(records))


def write_results(root: Path, frame: pd.DataFrame) -> None:
    """``results.csv`` and ``results.json`` in ``root`` (written atomically)."""
    atomic_write_text(root / "results.csv", frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    atomic_write_text(root / "results.json", frame.to_json(orient="records", indent=1, double_precision=6) + "\n")


CURVE_COLUMNS = (
    "dataset data_used ipc method variant arch seed iteration accuracy scale machine commit settings cell_id"
).split()


def curve_rows(records: list[Record]) -> pd.DataFrame:
    """Accuracy during distillation (cells run with ``eval_every``): one row per logged evaluation point."""
    rows = [
        {**cell_columns(r), "iteration": int(point["iteration"]), "accuracy": float(point["accuracy"])}
        for r in records
        for point in r.log
        if "accuracy" in point
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def write_curves(root: Path, records: list[Record]) -> None:
    """``curves.csv`` in ``root`` when any cell logged accuracy during distillation (written atomically)."""
    frame = curve_rows(records)
    if not frame.empty:
        atomic_write_text(root / "curves.csv", frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
