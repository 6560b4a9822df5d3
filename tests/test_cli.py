"""The ``dreambench`` command as a new user meets it: subcommands, listings, validation, --set, Ctrl-C, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.cli.main import main as dreambench
from bench.cli.run import main as run_main
from methods.base import list_methods

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random", "DC"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {
        "mini": {"max_per_class": 10, "defaults": {"iterations": 2, "batch_real": 8, "eval_epochs": 2, "eval_runs": 1}}
    },
}


def write(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_every_subcommand_answers_help_and_a_mistyped_one_gets_a_suggestion(capsys) -> None:
    for name in ("run", "validate", "status", "report", "evaluate", "ls"):
        with pytest.raises(SystemExit) as done:
            dreambench([name, "--help"])
        assert done.value.code == 0
        assert "usage: " in capsys.readouterr().out
    assert dreambench(["rnu"]) == 2
    assert "did you mean 'run'?" in capsys.readouterr().err


def test_the_console_script_is_installed_and_lists_every_method() -> None:
    out = subprocess.run(["dreambench", "ls", "methods"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert set(list_methods()) <= listed


def test_ls_lists_every_kind(capsys) -> None:
    assert dreambench(["ls"]) == 0
    out = capsys.readouterr().out
    for kind in ("methods:", "datasets:", "archs:", "protocols:", "layouts:", "matrices:", "executors:"):
        assert kind in out
    assert "DenseNet-121" in out and "matrices/table1.yaml" in out and "-p paper" in out and "fidelity" in out


def test_validate_checks_without_work_and_names_every_missing_dataset(tmp_path: Path, capsys) -> None:
    assert dreambench(["validate", str(ROOT / "matrices" / "quickstart.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: quickstart [mini]: 12 cells; data: digits (12 cells)")
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert (
        dreambench(["validate", str(ROOT / "matrices" / "table1.yaml"), "-p", "paper", "--data-root", str(empty)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data-root" in err and "5 datasets are missing" in err
    for name in ("MNIST", "FashionMNIST", "SVHN", "CIFAR10", "CIFAR100"):
        assert name in err
    assert not any(tmp_path.rglob("*.json"))


def test_set_overrides_are_checked_fingerprinted_and_recorded(tmp_path: Path, capsys) -> None:
    matrix = write(tmp_path, {**TINY, "methods": ["DC"]})
    results = tmp_path / "r"
    assert run_main([str(matrix), "--results", str(results), "--set", "lr_img=0.05", "--no-report"]) == 0
    record = json.loads(next(results.rglob("result.json")).read_text())
    assert record["cell"]["settings"]["lr_img"] == 0.05 and record["plan"]["method"]["config"]["lr_img"] == 0.05
    capsys.readouterr()
    assert run_main([str(matrix), "--results", str(results), "--set", "lr_img=0.05", "--dry-run"]) == 0
    assert "0 to run" in capsys.readouterr().out  # same settings: done
    assert run_main([str(matrix), "--results", str(results), "--set", "lr_img=0.1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 to run" in out and "stale  digits_ipc1_DC" in out
    for bad, needle in (("lr_img=false", "lr_img"), ("nonsense=1", "nonsense"), ("lr_img", "key=value")):
        assert run_main([str(matrix), "--results", str(results), "--set", bad, "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err


def test_status_reports_local_runs_and_refuses_other_folders(tmp_path: Path, capsys) -> None:
    from bench.cli.status import main as status

    matrix = write(tmp_path, TINY)
    results = tmp_path / "r"
    assert run_main([str(matrix), "--results", str(results), "--only", "Random", "--no-report"]) == 0
    capsys.readouterr()
    assert status([str(results / "tiny" / "mini")]) == 0
    out = capsys.readouterr().out
    assert "done     digits_ipc1_Random_ConvNet-3_s0" in out and "pending  digits_ipc1_DC_ConvNet-3_s0" in out
    assert out.strip().endswith("1 done, 1 pending")
    assert status([str(results / "tiny")]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and str(results / "tiny" / "mini") in err


@pytest.mark.slow
def test_ctrl_c_ends_with_one_line_and_130_and_a_rerun_resumes(tmp_path: Path) -> None:
    spec = {
        **TINY,
        "methods": ["DC"],
        "seeds": [0, 1, 2],
        "profiles": {
            "mini": {
                "max_per_class": 10,
                "defaults": {"iterations": 30, "batch_real": 8, "eval_epochs": 2, "eval_runs": 1},
            }
        },
    }
    matrix = write(tmp_path, spec)
    cmd = [sys.executable, "-m", "bench.run", str(matrix), "--results", str(tmp_path / "r"), "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # a user's terminal delivers Ctrl-C to a process whose SIGINT is not ignored; a test started in the
    # background (nohup, &) inherits an ignored SIGINT, so the child gets the default back first
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=restore
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "cells to run" in line:
            break
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "cells done; re-run the same command to resume" in lines[0]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "r").rglob("result.json"))) == 3
