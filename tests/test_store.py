"""The results folder keeps what it holds: nothing is deleted, nothing is written outside it, and two runs
with different plans cannot share it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from bench.cli.run import main as run_main
from bench.experiment.store import (
    ASIDE_DIR,
    FolderBusyError,
    ResultsFolderError,
    check_folder,
    claim_folder,
    set_digest,
    write_cell,
)

TINY = {
    "name": "tiny",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {"mini": {"max_per_class": 10, "defaults": {"evaluation": {"epochs": 2, "runs": 1}}}},
}


def test_a_replaced_record_is_moved_aside_never_deleted(tmp_path: Path) -> None:
    write_cell(tmp_path, "c", {"cell": {"id": "c"}, "n": 1}, None)
    write_cell(tmp_path, "c", {"cell": {"id": "c"}, "n": 2}, None)
    assert json.loads((tmp_path / "c" / "result.json").read_text())["n"] == 2
    kept = [json.loads((p / "result.json").read_text())["n"] for p in (tmp_path / ASIDE_DIR).iterdir()]
    assert kept == [1]


@pytest.mark.parametrize("name", [".checkpoints", ".errors", ".feature_nets", ".locks", ".aside"])
def test_a_symlinked_working_folder_is_refused_before_any_write(tmp_path: Path, name: str, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "r" / "tiny" / "mini"
    root.mkdir(parents=True)
    (root / name).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ResultsFolderError, match="symlink"):
        check_folder(root)
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(yaml.safe_dump(TINY))
    assert run_main([str(matrix), "--results", str(tmp_path / "r"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err
    assert not any(elsewhere.iterdir()) and not list(root.glob("*/result.json"))


def test_a_second_run_with_other_settings_is_refused_while_the_first_holds_the_folder(tmp_path: Path) -> None:
    with claim_folder(tmp_path, {"a": "1"}):
        with claim_folder(tmp_path, {"a": "1"}):  # the same plan may share the folder (cells split by locks)
            pass
        from bench.experiment.store import _start_time

        mine = json.loads((tmp_path / ".active.json").read_text())
        parent = str(os.getppid())
        for fake in (  # entries no live run wrote: never hold the folder, never a traceback
            {parent: {"plan": "another-plan", "started": "1"}},  # the pid is alive, but another process now
            {"1": "another-plan"},  # an older file's entry for pid 1
            {"99999999999999999999": "x", "²": "x", "0": "x", "-5": "x", "7": 5},
        ):
            (tmp_path / ".active.json").write_text(json.dumps({**mine, **fake}))
            with claim_folder(tmp_path, {"a": "2"}):
                pass
        live = {parent: {"plan": "another-plan", "started": _start_time(os.getppid())}}  # a live run, another plan
        (tmp_path / ".active.json").write_text(json.dumps({**mine, **live}))
        with pytest.raises(FolderBusyError, match=r"other settings.*if no such run is alive, remove .*\.active\.json"):
            with claim_folder(tmp_path, {"a": "2"}):
                pass
    assert str(os.getpid()) not in json.loads((tmp_path / ".active.json").read_text())


def test_a_stored_set_is_hashed_once_while_unchanged_and_again_once_swapped(tmp_path: Path, monkeypatch) -> None:
    import hashlib

    import bench.experiment.store as store

    calls: list[Path] = []
    real = store.file_digest
    monkeypatch.setattr(store, "file_digest", lambda path, algorithm: calls.append(path) or real(path, algorithm))
    path = tmp_path / "synthetic.pt"
    path.write_bytes(b"a" * 1000)
    first = set_digest(path)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest() and set_digest(path) == first and len(calls) == 1
    stat = path.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity (a few ms on coarse clocks)
    path.write_bytes(b"b" * 1000)  # same size; the mtime put back as it was: the inode change time still moves
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert set_digest(path) == hashlib.sha256(b"b" * 1000).hexdigest() and len(calls) == 2
