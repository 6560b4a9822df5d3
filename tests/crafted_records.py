"""Crafted result records for report tests: a real cell, planned by the real planner (no data needed), written
as a schema-current record with the accuracies and measurements a test chooses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bench.core.version import code_state
from bench.experiment.matrix import Cell
from bench.experiment.plan import plan_cell
from bench.experiment.record import CellRecord


def crafted_record(
    cell_fields: dict[str, Any],
    accuracies: dict[str, list[float]],
    matrix: str = "m",
    profile: str = "mini",
    **measured: Any,
) -> dict[str, Any]:
    """The JSON record a run of ``cell_fields`` would write, with ``accuracies`` and ``measured`` fields."""
    fields = {
        "matrix": matrix,
        "profile": profile,
        "arch": "ConvNet-3",
        "seed": 0,
        "variant": "",
        "settings": {},
        "eval_archs": tuple(accuracies) or ("ConvNet-3",),
        **cell_fields,
    }
    fields["eval_archs"] = tuple(fields["eval_archs"])
    data_used = measured.pop("data_used", fields["dataset"])
    machine = measured.pop("machine", "test machine")
    provenance = {"seed": fields["seed"], **code_state(), "dataset_md5": "test", **measured.pop("provenance", {})}
    cell = Cell(**fields)
    plan = plan_cell(cell, data_used)
    record = CellRecord(
        cell={**{k: getattr(cell, k) for k in cell.__dataclass_fields__}, "id": cell.id},
        fingerprint=measured.pop("fingerprint", plan.fingerprint),
        plan=plan.to_json(),
        provenance=provenance,
        data_used=data_used,
        scale=profile,
        machine=machine,
        torch=torch.__version__,
        accuracies=accuracies,
        **measured,
    ).to_json()
    return json.loads(json.dumps(record, default=str))


def write_record(root: Path, cell_fields: dict[str, Any], accuracies: dict[str, list[float]], **measured: Any) -> Path:
    """Write a crafted record into ``root/<cell id>/result.json`` (the folder named like the runner names it)."""
    record = crafted_record(cell_fields, accuracies, matrix=root.parent.name, profile=root.name, **measured)
    folder = root / record["cell"]["id"]
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(record))
    return folder
