"""What a run promises under hostile files, escaping names, diverging runs, corrupt records and bad settings.

Each test names the guarantee it backs (README, "Guarantees"). All run on the embedded digits in seconds.
"""

import json
import os
import pathlib
from pathlib import Path

import pytest
import torch
import yaml

from bench.cli.evaluate import main as evaluate_main
from bench.cli.run import main as run_main
from bench.core.files import UnsafeFileError, atomic_write_text, load_tensor_file
from bench.execution.slurm import record_jobs, recorded_jobs
from bench.execution.status import cell_states
from bench.experiment.checkpoint import Checkpointer
from bench.experiment.store import ASIDE_DIR, cell_lock

MATRIX = {
    "name": "safe",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {"mini": {"max_per_class": 20, "defaults": {"eval_epochs": 1, "eval_runs": 1}}},
}
CELL = "digits_ipc1_Random_ConvNet-3_s0"


def write_matrix(tmp_path: Path, **changes) -> Path:
    spec = json.loads(json.dumps(MATRIX))
    spec.update(changes)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(tmp_path: Path, matrix: Path, *extra: str) -> int:
    return run_main([str(matrix), "--results", str(tmp_path / "results"), "--no-report", *extra])


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


class Payload:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# ------------------------------------------------------------------------------------------- nothing runs


def test_hostile_tensor_files_are_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "data.pt"
    torch.save({"images": torch.zeros(10, 1, 16, 16), "labels": torch.arange(10), "x": Payload(marker)}, evil)
    with pytest.raises(UnsafeFileError, match="refused"):
        load_tensor_file(evil)
    assert evaluate_main([str(evil), "--dataset", "digits"]) == 2
    assert "refused" in capsys.readouterr().err
    ckpt = tmp_path / "c.pt"
    torch.save({"iteration": 3, "x": Payload(marker)}, ckpt)
    with pytest.raises(UnsafeFileError):
        Checkpointer(ckpt).load()
    assert not marker.exists()


def test_hostile_stored_set_in_a_results_folder_is_not_run(tmp_path, capsys):
    """A shared results folder whose synthetic.pt carries a payload: it never runs."""
    marker = tmp_path / "pwned"
    matrix = write_matrix(tmp_path, separate_evaluation=True)
    root = tmp_path / "results" / "safe" / "mini"
    assert run(tmp_path, matrix) == 0  # the distillation cell stores its set
    torch.save({"images": Payload(marker), "labels": torch.arange(10), "factor": 1}, root / CELL / "synthetic.pt")
    (root / f"{CELL}@ConvNet-3" / "result.json").unlink()  # the evaluation is to be redone on the swapped file
    # the swapped file is not the set the record names (sha256): the cell is corrupt, set aside unopened, redone
    assert run(tmp_path, matrix) == 0
    assert not marker.exists()
    assert any(p.name.startswith(CELL + ".") for p in (root / ASIDE_DIR).iterdir())
    with pytest.raises(UnsafeFileError):  # and had anything opened it, weights_only would have refused it
        load_tensor_file(next((root / ASIDE_DIR).glob(f"{CELL}.*")) / "synthetic.pt")
    assert not marker.exists()


# ------------------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "../../escape"),
        ("name", "/tmp/escape"),
        ("name", "a\nb"),
        ("profile", "../x"),
        ("profile", "mini\n#SBATCH --x"),
    ],
)
def test_escaping_names_stop_before_any_write(tmp_path, capsys, field, value):
    spec = {"profile": value, "profiles": {value: MATRIX["profiles"]["mini"]}} if field == "profile" else {field: value}
    matrix = write_matrix(tmp_path, **spec)
    before = files_under(tmp_path.parent)
    assert run(tmp_path, matrix) == 2
    err = capsys.readouterr().err.strip()
    assert "not a safe name" in err and "\n" not in err
    assert files_under(tmp_path.parent) == before


def test_variant_names_are_checked(tmp_path, capsys):
    matrix = write_matrix(tmp_path, variants={"a/b": {"eval_epochs": 1}})
    assert run(tmp_path, matrix) == 2 and "variant" in capsys.readouterr().err


# ------------------------------------------------------------------------------ diverged runs never count


def test_diverging_run_fails_and_is_never_a_number(tmp_path, capsys):
    matrix = write_matrix(
        tmp_path,
        methods=["DC", "Random"],
        profiles={
            "mini": {
                "max_per_class": 20,
                "defaults": {"eval_epochs": 1, "eval_runs": 1, "iterations": 3, "batch_real": 4},
                "methods": {"DC": {"lr_img": 1.0e6, "objective": {"gradient_weight": 1.0e30}}},
            }
        },
    )
    assert run(tmp_path, matrix) == 1
    root = tmp_path / "results" / "safe" / "mini"
    states = cell_states(root)
    assert (
        states["digits_ipc1_DC_ConvNet-3_s0"][0] == "failed"
        and "diverged at iteration" in states["digits_ipc1_DC_ConvNet-3_s0"][1]
    )
    assert states[CELL][0] == "done"  # the other cell went on
    from bench.reporting.tables import build_report

    table = build_report(root).table
    assert "DC" not in table.index and "Random" in table.index


# ------------------------------------------------------------------------------- records are validated


@pytest.mark.parametrize("damage", ["truncated", "out_of_range", "nan", "wrong_cell"])
def test_corrupt_record_is_named_moved_aside_and_redone(tmp_path, capsys, damage):
    matrix = write_matrix(tmp_path)
    assert run(tmp_path, matrix) == 0
    root = tmp_path / "results" / "safe" / "mini"
    path = root / CELL / "result.json"
    record = json.loads(path.read_text())
    if damage == "truncated":
        path.write_text(path.read_text()[:40])
    else:
        record["accuracies"]["ConvNet-3"] = [250.0] if damage == "out_of_range" else record["accuracies"]["ConvNet-3"]
        record["cell"]["id"] = "other" if damage == "wrong_cell" else record["cell"]["id"]
        text = json.dumps(record)
        path.write_text(
            text.replace(json.dumps(record["accuracies"]["ConvNet-3"]), "[NaN]") if damage == "nan" else text
        )
    state, detail = cell_states(root)[CELL]
    assert state == "corrupt" and str(path) in detail
    from bench.reporting.tables import build_report

    assert build_report(root).table.empty  # left out, with a warning
    assert "left out (corrupt)" in capsys.readouterr().err
    assert run(tmp_path, matrix) == 0  # moved aside and computed again
    assert "corrupt:" in capsys.readouterr().out
    assert cell_states(root)[CELL][0] == "done" and any((root / ASIDE_DIR).iterdir())


def test_stray_copies_are_not_pooled(tmp_path):
    matrix = write_matrix(tmp_path)
    assert run(tmp_path, matrix) == 0
    root = tmp_path / "results" / "safe" / "mini"
    record = json.loads((root / CELL / "result.json").read_text())
    for stray in (root / f"{CELL}.bak", root / "old" / CELL):
        stray.mkdir(parents=True)
        (stray / "result.json").write_text(json.dumps({**record, "accuracies": {"ConvNet-3": [0.0]}}))
    from bench.reporting.tables import build_report

    report = build_report(root)
    assert report.frame["accuracies"].tolist() == [record["accuracies"]["ConvNet-3"]]


# ------------------------------------------------------------------------------ stale work is not reused


def test_changed_settings_make_a_cell_stale(tmp_path, capsys):
    matrix = write_matrix(tmp_path)
    assert run(tmp_path, matrix) == 0
    root = tmp_path / "results" / "safe" / "mini"
    first = json.loads((root / CELL / "result.json").read_text())
    changed = write_matrix(
        tmp_path, profiles={"mini": {"max_per_class": 20, "defaults": {"eval_epochs": 2, "eval_runs": 1}}}
    )
    assert run(tmp_path, changed, "--keep-stale") == 0
    assert "kept stale" in capsys.readouterr().out
    assert json.loads((root / CELL / "result.json").read_text()) == first
    assert run(tmp_path, changed) == 0
    assert "stale:" in capsys.readouterr().out
    second = json.loads((root / CELL / "result.json").read_text())
    assert second["fingerprint"] != first["fingerprint"] and second["protocol"]["epochs"] == 2
    prov = second["provenance"]
    assert prov["seed"] == 0 and prov["fingerprint"] == second["fingerprint"] and len(prov["dataset_md5"]) == 32
    assert {"git_commit", "git_dirty", "torch", "cuda", "device", "set_sha256"} <= set(prov)


# ------------------------------------------------------------------------------------- errors up front


@pytest.mark.parametrize(
    "defaults,needle",
    [
        ({"lr_img": 0.0}, "lr_img"),
        ({"lr_img": float("nan")}, "lr_img"),
        ({"batch_real": 0}, "batch_real"),
        ({"iterations": 0}, "iterations"),
        ({"eval_runs": 0}, "eval_runs"),
        ({"eval_epochs": -1}, "eval_epochs"),
        ({"eval_protocol": "Z"}, "eval_protocol"),
    ],
)
def test_impossible_settings_stop_before_any_write(tmp_path, capsys, defaults, needle):
    matrix = write_matrix(tmp_path, methods=["DC"], profiles={"mini": {"defaults": defaults}})
    assert run(tmp_path, matrix) == 2
    err = capsys.readouterr().err
    assert needle in err and "allowed" in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"ipc": [500]}, "ipc 500"),
        ({"archs": ["timm:no_such_model"]}, "timm"),
        ({"datasets": ["mnist"]}, "MNIST"),
    ],
)
def test_unrunnable_matrix_exits_2(tmp_path, capsys, monkeypatch, changes, needle):
    monkeypatch.setenv("DREAMBENCH_DATA", str(tmp_path / "no-data"))
    matrix = write_matrix(tmp_path, **changes)
    assert run(tmp_path, matrix) == 2
    assert needle in capsys.readouterr().err
    assert not any((tmp_path / "results").rglob("result.json"))


def test_unwritable_results_folder_stops_before_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    matrix = write_matrix(tmp_path)
    assert run_main([str(matrix), "--results", str(blocker / "results"), "--no-report"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_binary_matrix_is_one_line(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_bytes(bytes(range(256)))
    assert run_main([str(path)]) == 2
    assert "not a text" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ concurrency


def test_a_cell_in_progress_elsewhere_is_skipped(tmp_path, capsys):
    matrix = write_matrix(tmp_path)
    root = tmp_path / "results" / "safe" / "mini"
    with cell_lock(root, CELL) as mine:
        assert mine
        assert run(tmp_path, matrix) == 0
    assert "being computed by another run" in capsys.readouterr().out
    assert not (root / CELL / "result.json").exists()


def test_job_records_are_merged(tmp_path):
    record_jobs(tmp_path, {"a": "1_0"}, "slurm")
    record_jobs(tmp_path, {"b": "2_0"}, "slurm")
    assert set(recorded_jobs(tmp_path)) == {"a", "b"}


# ------------------------------------------------------------------------------ leftovers and permissions


def test_leftovers_of_killed_writes_are_cleaned_and_files_follow_umask(tmp_path):
    matrix = write_matrix(tmp_path)
    root = tmp_path / "results" / "safe" / "mini"
    (root / f".{CELL}.abc123").mkdir(parents=True)  # what a kill during write_cell leaves
    (root / ".checkpoints").mkdir()
    (root / ".checkpoints" / f".{CELL}.pt.xyz").write_bytes(b"")
    old = os.umask(0o022)
    try:
        assert run(tmp_path, matrix) == 0
        atomic_write_text(root / "note.txt", "x")
    finally:
        os.umask(old)
    assert not (root / f".{CELL}.abc123").exists() and not (root / ".checkpoints" / f".{CELL}.pt.xyz").exists()
    assert (root / CELL).stat().st_mode & 0o777 == 0o755
    assert (root / "note.txt").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------ bench.learning.evaluation inputs


def _set(tmp_path: Path, name: str, images, labels) -> str:
    path = tmp_path / name
    torch.save({"images": images, "labels": labels}, path)
    return str(path)


@pytest.mark.parametrize(
    "case",
    [
        "directory",
        "empty",
        "garbage",
        "truncated",
        "shape",
        "label_range",
        "length",
        "nan",
        "empty_set",
        "arch",
        "runs",
        "epochs",
        "factor",
    ],
)
def test_evaluate_rejects_bad_input_in_one_line(tmp_path, capsys, case):
    good_x, good_y = torch.rand(10, 1, 16, 16), torch.arange(10)
    path = _set(tmp_path, "good.pt", good_x, good_y)
    extra: list[str] = []
    if case == "directory":
        path = str(tmp_path)
    elif case == "empty":
        (tmp_path / "e.pt").write_bytes(b"")
        path = str(tmp_path / "e.pt")
    elif case == "garbage":
        (tmp_path / "g.pt").write_bytes(os.urandom(300))
        path = str(tmp_path / "g.pt")
    elif case == "truncated":
        data = Path(path).read_bytes()
        (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
        path = str(tmp_path / "t.pt")
    elif case == "shape":
        path = _set(tmp_path, "s.pt", torch.rand(10, 3, 16, 16), good_y)
    elif case == "label_range":
        path = _set(tmp_path, "l.pt", good_x, torch.arange(10) + 5)
    elif case == "length":
        path = _set(tmp_path, "n.pt", good_x, good_y[:7])
    elif case == "nan":
        path = _set(tmp_path, "nan.pt", torch.full((10, 1, 16, 16), float("nan")), good_y)
    elif case == "empty_set":
        path = _set(tmp_path, "z.pt", torch.zeros(0, 1, 16, 16), torch.zeros(0, dtype=torch.long))
    else:
        extra = {
            "arch": ["--arch", "NoSuchNet"],
            "runs": ["--runs", "0"],
            "epochs": ["--epochs", "-3"],
            "factor": ["--factor", "0"],
        }[case]
    with pytest.raises(SystemExit) if case in ("runs", "epochs", "factor") else _no_raise() as exit_info:
        code = evaluate_main([path, "--dataset", "digits", "--epochs", "1", "--runs", "1", *extra])
    code = exit_info.value.code if case in ("runs", "epochs", "factor") else code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err and ("error" in err.splitlines()[-1])


class _no_raise:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_records_made_from_other_data_are_stale(tmp_path, capsys):
    from tests.fake_datasets import write_mnist

    data = tmp_path / "data"
    write_mnist(data, n_train=20)
    matrix = write_matrix(tmp_path, datasets=["mnist"])
    args = ["--data-root", str(data)]
    assert run(tmp_path, matrix, *args) == 0
    write_mnist(data, n_train=30)  # same settings, different files
    import bench.experiment.plan

    bench.experiment.plan._DATA.clear()  # a new process would read the files afresh
    assert run(tmp_path, matrix, *args) == 0
    assert "computed on other data" in capsys.readouterr().out


def test_old_temp_files_of_killed_writes_are_removed(tmp_path):
    matrix = write_matrix(tmp_path)
    root = tmp_path / "results" / "safe" / "mini"
    root.mkdir(parents=True)
    old, fresh = root / ".table.md.abc", root / ".table.md.def"
    old.write_text("")
    fresh.write_text("")
    os.utime(old, (1, 1))
    assert run(tmp_path, matrix) == 0
    assert not old.exists() and fresh.exists()  # a fresh one may be a write in progress


def test_records_name_the_commit_whose_code_was_loaded():
    """The git state is read when bench.core.version is imported, so a run that lasts hours while HEAD moves on
    records the commit it actually runs."""
    import subprocess
    import sys

    probe = "import bench.core.version as c; print(c.code_state.cache_info().currsize)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr


# ------------------------------------------------------------------ third round: damaged sets, links, leftovers


def test_a_damaged_stored_set_is_corrupt_never_a_traceback_and_is_redone(tmp_path, capsys):
    from bench.reporting.tables import build_report

    matrix = write_matrix(tmp_path)
    assert run(tmp_path, matrix) == 0
    root = tmp_path / "results" / "safe" / "mini"
    (root / CELL / "synthetic.pt").write_bytes(b"garbage")
    assert cell_states(root)[CELL][0] == "corrupt"  # its record names another set (sha256)
    build_report(root)  # corrupt for the report too: left out with a warning, no traceback
    assert "sha256 differs" in capsys.readouterr().err
    assert run(tmp_path, matrix) == 0
    assert cell_states(root)[CELL][0] == "done"
    assert any(p.name.startswith(CELL) for p in (root / ASIDE_DIR).iterdir())  # the damaged one kept aside


def test_a_symlinked_cell_folder_is_moved_aside_as_a_link_and_its_target_untouched(tmp_path):
    matrix = write_matrix(tmp_path)
    root = tmp_path / "results" / "safe" / "mini"
    assert run(tmp_path, matrix) == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "result.json").write_text("garbage")
    import shutil

    shutil.rmtree(root / CELL)
    (root / CELL).symlink_to(outside)
    assert run(tmp_path, matrix) == 0
    assert (outside / "result.json").read_text() == "garbage" and files_under(outside) == {"result.json"}
    assert not (root / CELL).is_symlink() and cell_states(root)[CELL][0] == "done"
    assert any(p.is_symlink() for p in (root / ASIDE_DIR).iterdir())


def test_a_folder_in_a_checkpoints_place_is_moved_aside(tmp_path):
    from bench.experiment.checkpoint import checkpoint_for

    ckpt = checkpoint_for(tmp_path, "c", every=1)
    ckpt.path.mkdir()
    assert ckpt.load() is None and not ckpt.path.exists()
    ckpt.save({"param": torch.zeros(1), "opt_img": {}, "iteration": 1, "log": [], "timings": {}})
    assert ckpt.load()["iteration"] == 1


def test_a_link_in_a_cell_locks_place_is_moved_aside_and_the_cell_runs(tmp_path):
    matrix = write_matrix(tmp_path)
    root = tmp_path / "results" / "safe" / "mini"
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (root / ".locks").mkdir(parents=True)
    (root / ".locks" / f"{CELL}.lock").symlink_to(victim)
    assert run(tmp_path, matrix) == 0
    assert victim.read_text() == "keep" and cell_states(root)[CELL][0] == "done"
    assert any(p.is_symlink() for p in (root / ASIDE_DIR).iterdir())
