"""The record a cell writes states what ran (its whole plan), reads back typed, and older or damaged records
are upgraded or refused by one rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crafted_records import crafted_record, write_record

from bench.experiment.matrix import parse_matrix
from bench.experiment.plan import plan_cell, plan_cells
from bench.experiment.record import RecordError, read_record, upgrade_record
from bench.experiment.store import check_record
from bench.experiment.tasks import run_and_store
from bench.reporting.tables import build_report

TINY = {
    "name": "rec",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["DC"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {
        "mini": {
            "max_per_class": 10,
            "defaults": {"iterations": 1, "eval_epochs": 2, "eval_runs": 1, "batch_real": 8, "lr_img": 0.05},
        }
    },
}


def test_a_record_round_trips_with_its_whole_plan(tmp_path: Path) -> None:
    plan = plan_cells(parse_matrix(TINY, "rec").cells, None)[0]
    record = run_and_store(plan, tmp_path)
    on_disk = json.loads((tmp_path / plan.id / "result.json").read_text())
    assert on_disk["schema_version"] == 2 and on_disk["plan"] == json.loads(json.dumps(plan.to_json()))
    method = on_disk["plan"]["method"]
    assert method["config"]["lr_img"] == 0.05 and method["config"]["batch_real"] == 8  # as resolved, not guessed
    assert method["config"]["iterations"] == 1 and method["factor"] == 1
    assert on_disk["plan"]["evaluation"]["protocols"]["ConvNet-3"]["epochs"] == 2
    assert on_disk["plan"]["evaluation"]["epochs_from"] == "matrix" and on_disk["plan"]["data_used"] == "digits"
    assert check_record(tmp_path, plan.id, plan.fingerprint).state == "done"
    again = read_record(on_disk, plan.id)
    assert again == record and again.config == method["config"] and again.method_parts == ("DC",)


def test_under_data_fallback_the_plan_and_fingerprint_are_the_data_used(tmp_path: Path) -> None:
    raw = {**TINY, "datasets": ["mnist"], "profiles": {"mini": {**TINY["profiles"]["mini"], "data_fallback": "digits"}}}
    cell = parse_matrix(raw, "rec").cells[0]
    empty = tmp_path / "no-data"
    empty.mkdir()
    plan = plan_cells([cell], str(empty))[0]
    assert plan.data_used == "digits" and plan.to_json()["data_used"] == "digits"
    assert plan.fingerprint == plan_cell(cell, "digits").fingerprint != plan_cell(cell, "mnist").fingerprint
    record = run_and_store(plan, tmp_path / "r", str(empty))
    assert record.data_used == "digits" and record.fingerprint == plan.fingerprint


def test_an_old_schema_record_is_upgraded_by_one_function_and_reported(tmp_path: Path) -> None:
    current = crafted_record(
        {"dataset": "mnist", "ipc": 1, "method": "Random"},
        {"ConvNet-3": [60.0, 62.0]},
        matrix="fidelity",
        profile="cpu",
        protocol={"name": "A-dcaug", "epochs": 300, "epochs_from": "matrix"},
    )
    old = {k: v for k, v in current.items() if k not in ("schema_version", "code_version", "plan")}
    old["protocol"] = {"name": "A-dcaug", "epochs": 300}  # schema 1 did not say where epochs came from
    upgraded = upgrade_record(old)
    assert upgraded["schema_version"] == 1 and upgraded["plan"] is None
    assert upgraded["protocol"]["epochs_from"] == "matrix"  # 300 is not A-dcaug's own 1000
    record = read_record(old, current["cell"]["id"])
    assert record.config is None and record.feature_network is None and record.method_parts is None
    root = tmp_path / "fidelity" / "cpu" / current["cell"]["id"]
    root.mkdir(parents=True)
    (root / "result.json").write_text(json.dumps(old))
    assert "60.0" in build_report(root.parent).table.loc["Random", "mnist/1"].replace("61.0", "60.0")


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda r: r.pop("machine"), "machine is missing"),
        (lambda r: r["cell"].pop("ipc"), "cell.ipc is missing"),
        (lambda r: r.update(eval_runs="5"), "eval_runs holds '5'"),
        (lambda r: r.update(accuracies={"ConvNet-3": [True]}), "accuracies"),
        (lambda r: r.update(machine="x" * 100_000), "at most 4096"),
        (lambda r: r["plan"].update(note="y" * 100_000), "plan holds a string"),
        (lambda r: r.update(schema_version=99), "schema_version"),
    ],
)
def test_a_record_off_the_schema_is_refused_with_its_field(damage, needle) -> None:
    record = crafted_record({"dataset": "digits", "ipc": 1, "method": "DC"}, {"ConvNet-3": [50.0]})
    damage(record)
    with pytest.raises(RecordError, match=needle.replace("(", r"\(")):
        read_record(record, record["cell"]["id"])


def test_a_corrupt_record_is_corrupt_for_status_run_and_report_alike(tmp_path: Path) -> None:
    from bench.execution.status import cell_states

    folder = write_record(
        tmp_path / "m" / "mini", {"dataset": "digits", "ipc": 1, "method": "DC"}, {"ConvNet-3": [50.0]}
    )
    record = json.loads((folder / "result.json").read_text())
    record["eval_seconds"] = "slow"
    (folder / "result.json").write_text(json.dumps(record))
    assert check_record(folder.parent, folder.name).state == "corrupt"
    assert cell_states(folder.parent)[folder.name][0] == "corrupt"
    assert build_report(folder.parent).frame.empty


def test_accuracies_of_a_network_the_cell_never_evaluated_are_corrupt() -> None:
    record = crafted_record({"dataset": "digits", "ipc": 1, "method": "DC"}, {"ConvNet-3": [50.0]})
    record["accuracies"] = {"NoNet|x": [50.0]}
    with pytest.raises(RecordError, match="not one of the cell's eval_archs"):
        read_record(record, record["cell"]["id"])


def test_a_copy_run_elsewhere_records_the_commit_its_sender_names(monkeypatch):
    from bench.core.version import code_state

    monkeypatch.setenv("DREAMBENCH_SOURCE_COMMIT", "ee38333")
    assert code_state.__wrapped__() == {"git_commit": "ee38333", "git_dirty": None}  # not the copy's stale .git
    monkeypatch.delenv("DREAMBENCH_SOURCE_COMMIT")
    assert code_state.__wrapped__()["git_commit"] != "ee38333"
