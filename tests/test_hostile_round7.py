"""Hostile inputs, seventh review (issue 27): page folders that are links or hold folders where files go, a smoke
run on the real run's folder, names that do not say what runs, equal numbers written two ways, SIGTERM. Real tiny
runs on the embedded digits."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.cli.main import main as cli_main
from bench.cli.report import main as report_main
from bench.cli.run import main as run_main
from bench.experiment.matrix import MatrixError, cell_cap, parse_matrix

ROOT = Path(__file__).resolve().parents[1]
MATRIX = {
    "name": "r7",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random", "DM"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {
        "p": {"max_per_class": 20, "defaults": {"budget": {"iterations": 1}, "evaluation": {"epochs": 1, "runs": 1}}}
    },
}


def run(tmp_path: Path, *extra: str, results: str = "R") -> tuple[Path, str]:
    path = tmp_path / "r7.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert run_main([str(path), "--results", str(tmp_path / results), *extra]) == 0
    return tmp_path / results / "r7" / "p", out.getvalue()


def publish(root: Path, page: Path, *extra: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return report_main([str(root), "--publish", str(page), *extra])


def test_a_page_folder_that_is_a_link_is_refused_and_nothing_is_written(tmp_path, capsys):
    root, _ = run(tmp_path)
    (tmp_path / "P" / "b").mkdir(parents=True)
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "notes.txt").write_text("notes")
    (mine / "pg").symlink_to(tmp_path / "P" / "b")
    assert publish(root, mine / "pg") == 2
    assert "a link; allowed: a real folder" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "pg"] and not any((tmp_path / "P" / "b").iterdir())


@pytest.mark.parametrize("folder_at", ["grid_digits_ipc1_DM.png", "results.csv"])
def test_a_folder_where_the_page_writes_a_file_stops_publish_before_anything_changes(tmp_path, capsys, folder_at):
    root, _ = run(tmp_path)
    page = tmp_path / "pages" / "a"
    assert publish(root, page) == 0
    (page / folder_at).unlink()
    (page / folder_at).mkdir()
    before = {p.name: p.is_dir() or p.read_bytes() for p in page.iterdir()}
    smaller, _ = run(tmp_path, "--only", "*DM*", results="R2")
    assert publish(smaller, page, "--replace") == 2  # even when replacing on purpose
    assert f"{page / folder_at}: not a regular file" in capsys.readouterr().err
    assert {p.name: p.is_dir() or p.read_bytes() for p in page.iterdir()} == before


def test_a_smoke_run_on_the_real_runs_folder_costs_it_nothing(tmp_path):
    root, _ = run(tmp_path)
    records = {c.name: (c / "result.json").read_bytes() for c in root.glob("digits_*")}
    run(tmp_path, "--set", "evaluation.epochs=2")  # the README's smoke pattern, same folder
    _, out = run(tmp_path)  # the real settings again
    assert out.count("restored digits_ipc1_") == 2 and "0 of 2 cells to run" in out
    assert {c: (root / c / "result.json").read_bytes() for c in records} == records  # the very same records
    assert len(list((root / ".aside").iterdir())) == 2  # the smoke run's, kept


def test_equal_numbers_written_two_ways_are_one_setting():
    one = parse_matrix({**MATRIX, "profiles": {"p": {"defaults": {"engine": {"lr_img": 1}}}}}, "r7")
    other = parse_matrix({**MATRIX, "profiles": {"p": {"defaults": {"engine": {"lr_img": 1.0}}}}}, "r7")
    assert [c.settings for c in one.cells] == [c.settings for c in other.cells]
    assert json.dumps(one.cells[1].settings) == json.dumps(other.cells[1].settings)  # one fingerprint
    variants = {"a": {"engine": {"lr_img": 1}}, "b": {"engine": {"lr_img": 1.0}}}
    with pytest.raises(MatrixError, match="one value written two ways"):
        parse_matrix({**MATRIX, "methods": ["DC"], "variants": variants}, "r7")


def test_a_hub_path_is_refused_with_a_hint_that_works():
    with pytest.raises(MatrixError, match="a hub or local path"):
        parse_matrix({**MATRIX, "eval_archs": ["timm:hf-hub:timm/resnet18.a1_in1k"]}, "r7")


def test_a_hand_edited_matrix_file_is_named_when_publishing(tmp_path, capsys):
    root, _ = run(tmp_path)
    info = json.loads((root / ".matrix.json").read_text())
    (root / ".matrix.json").write_text(json.dumps({**info, "command": "dreambench run x\n# heading"}))
    assert publish(root, tmp_path / "pages" / "p") == 2
    assert f"{root / '.matrix.json'}: page command" in capsys.readouterr().err
    (root / ".matrix.json").write_text('{"a":')
    assert publish(root, tmp_path / "pages" / "p") == 2
    assert "its .matrix.json is missing, unreadable or incomplete" in capsys.readouterr().err
    assert not (tmp_path / "pages").exists()


@pytest.mark.parametrize("command", ["status", "report"])
def test_a_folder_at_the_plan_file_is_named_by_status_and_report(tmp_path, capsys, command):
    root = tmp_path / "R" / "r7" / "p"
    (root / ".cells.json").mkdir(parents=True)
    assert cli_main([command, str(root)]) == 2
    assert ".cells.json is a folder where the run writes its own file" in capsys.readouterr().err


def test_the_cell_cap_reads_surrounding_spaces_as_the_flag_does(monkeypatch):
    monkeypatch.setenv("DREAMBENCH_MAX_CELLS", " 10 ")
    assert cell_cap(None) == 10


def test_sigterm_ends_a_run_in_one_line_with_exit_code_143_and_its_checkpoint_kept(tmp_path):
    matrix = {
        **MATRIX,
        "methods": ["DC"],
        "launcher": {"checkpoint_every": 1},
        "profiles": {
            "p": {"max_per_class": 20, "defaults": {"budget": {"iterations": 2000}, "engine": {"batch_real": 8}}}
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(matrix))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", str(path), "--results", str(tmp_path / "R")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    checkpoint = tmp_path / "R" / "r7" / "p" / ".checkpoints" / "digits_ipc1_DC_ConvNet-3_s0.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "terminated: 0 of 1 cells done; re-run the same command to resume"
    assert checkpoint.exists()


# ------------------------------------------------------------------------------------------ eighth review

SPLIT = {**MATRIX, "methods": ["DM"], "separate_evaluation": True}


def run_split(tmp_path: Path, *extra: str) -> tuple[int, str]:
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(SPLIT))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = run_main([str(path), "--results", str(tmp_path / "S"), *extra])
    return code, out.getvalue()


def test_a_source_set_aside_without_its_set_is_recomputed_not_restored(tmp_path):
    assert run_split(tmp_path)[0] == 0
    assert run_split(tmp_path, "--set", "budget.iterations=2")[0] == 0
    root = tmp_path / "S" / "r7" / "p"
    source = "digits_ipc1_DM_ConvNet-3_s0"
    (aside_copy,) = [p for p in (root / ".aside").iterdir() if p.name.startswith(source + ".stale.")]
    (aside_copy / "synthetic.pt").unlink()  # the set an evaluation cell would read
    code, out = run_split(tmp_path)
    assert code == 0 and f"restored {source} " not in out
    assert (root / source / "synthetic.pt").is_file()  # computed again, and its evaluation ran on it
    assert (root / f"{source}@ConvNet-3" / "result.json").is_file()


def test_an_evaluation_of_another_set_than_its_source_holds_is_stale(tmp_path):
    assert run_split(tmp_path)[0] == 0
    root = tmp_path / "S" / "r7" / "p"
    evaluation = root / "digits_ipc1_DM_ConvNet-3_s0@ConvNet-3"
    record = json.loads((evaluation / "result.json").read_text())
    record["provenance"]["set_sha256"] = "0" * 64  # as if its source were recomputed into another set since
    (evaluation / "result.json").write_text(json.dumps(record))
    code, out = run_split(tmp_path)
    source_sha = json.loads((root / "digits_ipc1_DM_ConvNet-3_s0" / "result.json").read_text())["provenance"]
    assert code == 0 and "evaluated another set than" in out
    assert json.loads((evaluation / "result.json").read_text())["provenance"]["set_sha256"] == source_sha["set_sha256"]


def test_keep_stale_still_puts_back_a_result_of_these_very_settings(tmp_path):
    root, _ = run(tmp_path)
    records = {c.name: (c / "result.json").read_bytes() for c in root.glob("digits_*")}
    run(tmp_path, "--set", "evaluation.epochs=2")
    _, out = run(tmp_path, "--keep-stale")
    assert out.count("restored digits_ipc1_") == 2
    assert {c: (root / c / "result.json").read_bytes() for c in records} == records


def test_minus_zero_is_zero_and_a_methods_own_objective_value_is_not_refused():
    variants = {"a": {"engine": {"net_weight_decay": 0.0}}, "b": {"engine": {"net_weight_decay": -0.0}}}
    with pytest.raises(MatrixError, match="one value written two ways"):
        parse_matrix({**MATRIX, "methods": ["DC"], "ipc": [10], "variants": variants}, "r7")
    own = {"p": {"defaults": {"engine": {"objective": {"gradient_weight": 0}}}}}
    assert parse_matrix({**MATRIX, "methods": ["DM"], "profiles": own}, "r7").cells  # DM's own value
    with pytest.raises(MatrixError, match=r"undoes \+bm"):
        parse_matrix({**MATRIX, "methods": ["DM+bm"], "profiles": own}, "r7")


def test_set_takes_one_field_of_the_objective(tmp_path):
    from bench.cli.run import parse_set

    extra = parse_set(["engine.objective.feature_weight=0.5"])
    matrix = parse_matrix({**MATRIX, "methods": ["DC+bm"]}, "r7", extra=extra)
    assert matrix.cells[0].settings["objective"] == {"feature_weight": 0.5}


def test_a_readme_without_a_status_block_is_named(tmp_path, capsys):
    root, _ = run(tmp_path)
    assert publish(root, tmp_path / "pages" / "p") == 0
    readme = tmp_path / "MY_README.md"
    readme.write_text("# mine\n")
    assert report_main(["--index", str(tmp_path / "pages"), "--readme", str(readme)]) == 2
    assert f"--readme {readme}: the README has no status block" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ ninth review


@pytest.mark.parametrize(
    "changes,needle",
    [
        (
            {"layout": "table4", "methods": ["DC"], "variants": {"a": {"engine": {"lr_img": 0.1}}, "b": {}}},
            "layout table4 keeps rows apart only by method, arch, eval_arch, ipc, but this matrix's cells vary in "
            "variant (a, b)",
        ),
        ({"task": "continual", "layout": "continual", "ipc": [1, 2], "profiles": {"p": {}}}, "vary in ipc (1, 2)"),
    ],
)
def test_a_layout_that_would_pool_what_the_cells_vary_in_is_refused(tmp_path, capsys, changes, needle):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**MATRIX, **changes}))
    assert cli_main(["validate", str(path), "--no-data"]) == 2
    assert needle in capsys.readouterr().err


def test_a_smoke_run_costs_evaluation_cells_nothing_either(tmp_path):
    assert run_split(tmp_path)[0] == 0
    assert run_split(tmp_path, "--set", "evaluation.epochs=2")[0] == 0
    code, out = run_split(tmp_path)
    assert code == 0 and out.count("restored digits_ipc1_DM_ConvNet-3_s0") == 2 and "0 of 2 cells to run" in out


def test_variants_equal_wherever_both_have_cells_are_refused():
    variants = {"a": {"engine": {"lr_img": 0.1}}, "b": {"engine": {"lr_img": 1.0}}}
    raw = {
        **MATRIX,
        "methods": ["Random", "DC"],
        "variants": variants,
        "exclude": [{"method": "Random", "variant": "b"}],
    }
    assert len(parse_matrix(raw, "r7").cells) == 3
    with pytest.raises(MatrixError, match="variants a, b give every cell the same settings"):
        parse_matrix(raw, "r7", extra={"engine": {"lr_img": 3.0}})  # --set makes them one; Random has a only


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--title", "T"], "--title works with --publish FOLDER only"),
        (["--description", "d"], "--description works with --publish FOLDER only"),
    ],
)
def test_report_options_that_would_do_nothing_are_refused(tmp_path, capsys, argv, needle):
    root, _ = run(tmp_path)
    assert report_main([str(root), *argv]) == 2
    assert needle in capsys.readouterr().err


def test_index_with_another_accuracy_and_a_page_nested_in_a_pages_folder_are_refused(tmp_path, capsys):
    root, _ = run(tmp_path)
    assert publish(root, tmp_path / "pages" / "p") == 0
    assert report_main(["--index", str(tmp_path / "pages"), "--accuracy", "best"]) == 2
    assert "--accuracy works on a results folder" in capsys.readouterr().err
    assert publish(root, tmp_path / "pages" / "x" / "y" / "z") == 2
    assert "which is not a page, inside the pages folder" in capsys.readouterr().err
    assert not (tmp_path / "pages" / "x").exists()


# ------------------------------------------------------------------------------------------ tenth review


def test_an_evaluation_cell_never_runs_on_a_source_of_other_settings(tmp_path):
    assert run_split(tmp_path)[0] == 0
    root = tmp_path / "S" / "r7" / "p"
    before = (root / "digits_ipc1_DM_ConvNet-3_s0@ConvNet-3" / "result.json").read_bytes()
    code, out = run_split(tmp_path, "--set", "budget.iterations=2", "--only", "*@ConvNet-3")
    assert code == 0 and "not run: digits_ipc1_DM_ConvNet-3_s0@ConvNet-3, since its source" in out
    assert (root / "digits_ipc1_DM_ConvNet-3_s0@ConvNet-3" / "result.json").read_bytes() == before


def test_a_publish_path_through_dot_dot_is_refused(tmp_path, capsys):
    root, _ = run(tmp_path)
    assert publish(root, tmp_path / "pages" / "zz" / ".." / "x") == 2
    assert "a path through '..'" in capsys.readouterr().err and not (tmp_path / "pages").exists()


# ------------------------------------------------------------------------------------------ eleventh review


def test_a_figure_the_report_did_not_draw_is_not_published(tmp_path):
    root, _ = run(tmp_path)
    (root / "grid_digits_ipc1_DM_old.png").write_bytes((root / "grid_digits_ipc1_DM.png").read_bytes())
    page = tmp_path / "pages" / "a"
    assert publish(root, page) == 0
    assert (page / "grid_digits_ipc1_DM.png").is_file() and not (page / "grid_digits_ipc1_DM_old.png").exists()
