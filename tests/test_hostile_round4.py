"""Hostile inputs, fourth review (issue 27): folder files and page folders tampered with, locks that are not
files, a checkpoint or published page of another run, a cell's error file replaced by a folder. Each ends in one
line (or is moved aside) and nothing outside the chosen folder is written. Real tiny runs on the embedded digits."""

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
import yaml

from bench.cli.main import main as cli_main
from bench.cli.report import main as report_main
from bench.cli.run import main as run_main
from bench.core.files import RefusedFileError, file_lock
from bench.execution.slurm import recorded_jobs
from bench.execution.status import cell_states
from bench.experiment.store import ASIDE_DIR

MATRIX = {
    "name": "r4",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {"mini": {"max_per_class": 20, "defaults": {"evaluation": {"epochs": 1, "runs": 1}}}},
}
CELL = "digits_ipc1_Random_ConvNet-3_s0"


def finished_run(tmp_path: Path, name: str = "r4", **changes) -> Path:
    """A finished run folder of a one-cell matrix (seconds); its output is not part of what a test reads."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**MATRIX, "name": name, **changes}))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert run_main([str(path), "--results", str(tmp_path / "results")]) == 0
    return tmp_path / "results" / name / "mini"


@pytest.mark.parametrize("kind", ["link", "fifo", "folder"])
def test_a_lock_file_that_is_not_a_file_is_refused_never_followed_or_waited_on(tmp_path, kind):
    lock, outside = tmp_path / "locks" / "x.lock", tmp_path / "outside"
    lock.parent.mkdir()
    {"link": lambda: lock.symlink_to(outside), "fifo": lambda: os.mkfifo(lock), "folder": lock.mkdir}[kind]()
    with pytest.raises(RefusedFileError, match="where a lock file belongs; allowed: a regular file"):
        with file_lock(lock):
            pass
    assert not outside.exists()


def test_a_fifo_at_the_folders_lock_is_one_line_not_a_hang(tmp_path, capsys):
    root = finished_run(tmp_path)
    (root / ".locks" / "active.lock").unlink()
    os.mkfifo(root / ".locks" / "active.lock")
    assert cli_main(["run", str(tmp_path / "r4.yaml"), "--results", str(tmp_path / "results")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "a FIFO (named pipe) where a lock file belongs" in last


@pytest.mark.parametrize("name", [".cells.json", ".matrix.json", ".active.json", "results.csv"])
def test_a_folder_where_the_harness_writes_a_file_is_one_line(tmp_path, capsys, name):
    root = finished_run(tmp_path)
    (root / name).unlink()
    (root / name).mkdir()
    code = cli_main(["run", str(tmp_path / "r4.yaml"), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: ")
    assert f"{name}: Is a directory" in err[-1] or f"{name} is a folder where the run writes its own file" in err[-1]
    assert cell_states(root)[CELL][0] == "done"  # the finished cell is kept


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys):
    long = str(tmp_path / ("a" * 300))
    for argv in (["status", long], ["report", long], ["run", "matrices/quickstart.yaml", "--results", long]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "File name too long" in err


def test_report_needs_a_run_folder_or_all(tmp_path, capsys):
    finished_run(tmp_path)
    for argv in ([""], [str(tmp_path / "results")]):
        assert report_main(argv) == 2
    err = capsys.readouterr().err
    assert "results folder ''" in err and "is not a run folder" in err and "--all" in err
    assert report_main([str(tmp_path / "results"), "--all"]) == 0
    assert cli_main(["status", ""]) == 2 and "results folder ''" in capsys.readouterr().err


def test_a_page_is_replaced_only_by_its_own_run_and_keeps_nothing_of_another(tmp_path):
    first = finished_run(tmp_path)
    second = finished_run(tmp_path, "other", methods=["Random", "Herding"], profiles=MATRIX["profiles"])
    pages = tmp_path / "pages"
    assert report_main([str(second), "--publish", str(pages / "p")]) == 0
    before = {p.name: p.read_bytes() for p in (pages / "p").iterdir()}
    assert report_main([str(first), "--publish", str(pages / "p")]) == 2  # another matrix's page
    assert {p.name: p.read_bytes() for p in (pages / "p").iterdir()} == before
    assert json.loads((pages / "p" / "page.json").read_text())["source"] == "other/mini"
    (pages / "p" / "grid_digits_ipc1_DC.png").write_bytes(b"a figure of an earlier version of the page")
    assert report_main([str(second), "--publish", str(pages / "p")]) == 0
    assert not (pages / "p" / "grid_digits_ipc1_DC.png").exists()  # no figure outlives its page


def test_publishing_replaces_links_in_the_page_folder_never_writes_through_them(tmp_path):
    root = finished_run(tmp_path)
    pages = tmp_path / "pages"
    assert report_main([str(root), "--publish", str(pages / "p")]) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("VICTIM")
    for name in ("results.csv", "table.md"):
        (pages / "p" / name).unlink()
        (pages / "p" / name).symlink_to(victim)
    (pages / "p" / "grid_x.png").symlink_to(tmp_path / "created-outside.png")
    assert report_main([str(root), "--publish", str(pages / "p")]) == 0
    assert victim.read_text() == "VICTIM" and not (tmp_path / "created-outside.png").exists()
    assert not any(p.is_symlink() for p in (pages / "p").iterdir())


@pytest.mark.parametrize(
    "content,needle",
    [
        ("{bad", "not a page description"),
        ("[1, 2]", "not a page description"),
        ('{"title": 5, "command": "x"}', "not a page description"),
        ('{"title": "x\\u2028## injected", "command": "x"}', "not a page description"),
        ('{"title": "x\\u0085y", "command": "x"}', "not a page description"),
    ],
)
def test_a_broken_sibling_page_stops_index_and_publish_before_anything_is_written(tmp_path, capsys, content, needle):
    root = finished_run(tmp_path)
    pages = tmp_path / "pages"
    assert report_main([str(root), "--publish", str(pages / "a")]) == 0
    (pages / "b").mkdir()
    (pages / "b" / "page.json").write_text(content)
    index = (pages / "index.md").read_bytes()
    assert report_main(["--index", str(pages)]) == 2
    assert report_main([str(root), "--publish", str(pages / "c")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (pages / "c").exists() and (pages / "index.md").read_bytes() == index


def test_a_readme_with_its_status_markers_out_of_order_is_one_line(tmp_path, capsys):
    root = finished_run(tmp_path)
    pages = tmp_path / "pages"
    assert report_main([str(root), "--publish", str(pages / "a")]) == 0
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- /status -->\n<!-- status: generated -->\nend\n")
    assert report_main(["--index", str(pages), "--readme", str(readme)]) == 2
    assert "status block is malformed" in capsys.readouterr().err
    assert readme.read_text().startswith("x\n<!-- /status -->")


def test_jobs_file_entries_of_another_shape_are_dropped_with_a_warning(tmp_path, capsys):
    root = finished_run(tmp_path)
    (root / ".jobs.json").write_text(json.dumps({CELL: "12345", "other": {"job_id": "7", "cluster": "slurm"}}))
    assert recorded_jobs(root) == {"other": {"job_id": "7", "cluster": "slurm"}}
    assert "are ignored" in capsys.readouterr().err
    assert cli_main(["status", str(root)]) == 0


def test_a_folder_at_a_cells_error_file_is_moved_aside_and_the_cell_counts_done(tmp_path):
    path = tmp_path / "r4.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    root = tmp_path / "results" / "r4" / "mini"
    (root / ".errors" / f"{CELL}.txt").mkdir(parents=True)
    assert run_main([str(path), "--results", str(tmp_path / "results")]) == 0
    assert cell_states(root)[CELL][0] == "done"
    assert any(p.name.startswith(f"{CELL}.error-not-a-file.") for p in (root / ASIDE_DIR).iterdir())


def test_a_source_whose_stored_set_is_missing_is_redone_for_its_evaluation_cells(tmp_path):
    spec = {**MATRIX, "separate_evaluation": True}
    path = tmp_path / "r4.yaml"
    path.write_text(yaml.safe_dump(spec))
    results = str(tmp_path / "results")
    assert run_main([path.as_posix(), "--results", results]) == 0
    root = tmp_path / "results" / "r4" / "mini"
    (root / CELL / "synthetic.pt").unlink()
    path.write_text(yaml.safe_dump({**spec, "eval_archs": ["ConvNet-3", "ConvNet"]}))  # a new evaluation cell
    assert run_main([path.as_posix(), "--results", results]) == 0
    assert (root / CELL / "synthetic.pt").is_file()
    assert all(state == "done" for state, _ in cell_states(root).values())


@pytest.mark.parametrize(
    "entry,needle",
    [
        ({"Random": {"engine": {"lr_img": 5.0}}}, "methods.Random.engine.lr_img: Random never reads it"),
        ({"Random": {"budget": {"eval_every": 1}}}, "methods.Random.budget.eval_every: Random never reads it"),
        ({"Random": {"budget": {"feature_epochs": 3}}}, "without a trained feature network"),
        ({"Herding": {"budget": {"iterations": 50}}}, "methods.Herding.budget.iterations: Herding never reads"),
        ({"DC": {"budget": {"feature_seed": 4}}}, "methods.DC.budget.feature_seed: DC never reads it"),
    ],
)
def test_a_setting_the_method_never_reads_is_refused_in_its_own_entry(entry, needle):
    from bench.experiment.matrix import MatrixError, parse_matrix

    spec = {**MATRIX, "methods": ["Random", "Herding", "DC"], "profiles": {"p": {"methods": entry}}}
    with pytest.raises(MatrixError, match="never reads it") as info:
        parse_matrix(spec, "p")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_shared_setting_a_method_never_reads_leaves_its_cells_alone(tmp_path, capsys):
    """The README's smoke pattern (--set budget.iterations=2) on a matrix with coresets recomputes nothing of
    theirs; a setting no method reads says so."""
    root = finished_run(tmp_path)
    record = (root / CELL / "result.json").read_bytes()
    argv = [str(tmp_path / "r4.yaml"), "--results", str(tmp_path / "results"), "--set", "budget.iterations=2"]
    assert run_main(argv) == 0
    captured = capsys.readouterr()
    assert "--set sets iterations, which no cell of this matrix reads (Random); it changes nothing" in captured.err
    assert (root / CELL / "result.json").read_bytes() == record and not (root / ASIDE_DIR).exists()


@pytest.mark.parametrize(
    "text,needle",
    [
        ("ipc: [010]", "'010' is a number only in octal"),
        ("iterations: 1:30", "'1:30' is a number only in"),
        ("iterations: 0x10", "'0x10' is a number only"),
        ("runs: 1_0", "'1_0' is a number only"),
        ("lr: 1_0.5", "'1_0.5' is a number only in YAML 1.1's underscore or sexagesimal notation"),
    ],
)
def test_yaml_1_1_numbers_are_refused_not_misread(text, needle):
    from bench.core.safe_yaml import YamlError, load_yaml_text

    with pytest.raises(YamlError, match="allowed: ") as info:
        load_yaml_text(text, "m.yaml")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_yaml_reads_numbers_and_booleans_as_yaml_1_2_does():
    from bench.core.safe_yaml import load_yaml_text

    read = load_yaml_text("a: 1e-2\nb: 5E3\nc: yes\nd: no\ne: true\nf: 10\ng: -3\nh: 0\n", "m.yaml")
    assert read == {"a": 0.01, "b": 5000.0, "c": "yes", "d": "no", "e": True, "f": 10, "g": -3, "h": 0}


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"seeds": [0, 1], "exclude": [{"seed": False}]}, "names seed False, which is not in the grid"),
        ({"exclude": [{"ipc": True}]}, "names ipc True"),
        ({"variants": {0: {}, None: {}}}, "'variants' has a variant named None"),
        ({"variants": {"": {}}}, "'variants' has a variant named ''"),
        ({"task": "continual", "profiles": {"p": {"defaults": {"evaluation": {"runs": 3}}}}}, "evaluation.runs set"),
        ({"task": "continual", "profiles": {"p": {"defaults": {"evaluation": {"protocol": "A"}}}}}, "never uses it"),
        (
            {"methods": ["DC"], "profiles": {"p": {"defaults": {"engine": {"objective": {"gradient_weight": 0}}}}}},
            "gradient_weight and feature_weight are both 0",
        ),
        ({"profiles": {"p": {"defaults": {"runs": 2}}}}, "unknown setting 'runs'; allowed: evaluation.runs"),
        ({"profiles": {"p": {"defaults": {"workers": 2}}}}, "'workers', a launcher setting"),
        ({"profiles": {1: {}}}, "'profiles' has a profile named 1 (int)"),
        ({"methods": ["DC+rm+"]}, "(a trailing '+'); write 'DC+rm'"),
        ({"layout": "continual"}, "layout: continual with task: distill"),
    ],
)
def test_values_yaml_or_a_grid_would_misread_are_refused(changes, needle):
    from bench.experiment.matrix import MatrixError, parse_matrix

    with pytest.raises(MatrixError) as info:
        parse_matrix({**MATRIX, **changes}, "r4")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_file_name_fallback_is_named_when_it_is_not_a_safe_name(tmp_path):
    from bench.experiment.matrix import MatrixError, load_matrix

    path = tmp_path / "my matrix.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in MATRIX.items() if k != "name"}))
    with pytest.raises(MatrixError, match=r"name \(taken from the file name; set name: to choose one\) = 'my matrix'"):
        load_matrix(path)


def test_top_level_overrides_may_name_what_another_profile_grids():
    from bench.experiment.matrix import parse_matrix

    spec = {
        **MATRIX,
        "ipc": [1, 10],
        "methods": ["DC", "DM"],
        "overrides": {"DM": {"budget": {"iterations": 3}}, "DC": {"per_ipc": {10: {"budget": {"iterations": 2}}}}},
        "profiles": {"mini": {"grid": {"methods": ["DC"], "ipc": [1]}}, "paper": {}},
    }
    assert [c.settings for c in parse_matrix(spec, "r4", "mini").cells] == [{}]
    paper = {c.id: c.settings for c in parse_matrix(spec, "r4", "paper").cells}
    assert paper["digits_ipc10_DC_ConvNet-3_s0"] == {"iterations": 2} and paper["digits_ipc1_DM_ConvNet-3_s0"] == {
        "iterations": 3
    }


def test_table_ii_shows_paper_values_only_for_tinyimagenet(tmp_path):
    from bench.reporting.tables import build_report

    profile = {"max_per_class": 20, "defaults": {"budget": {"iterations": 2}, "evaluation": {"epochs": 1, "runs": 1}}}
    root = finished_run(tmp_path, layout="table2", methods=["DM"], profiles={"mini": profile})
    table = build_report(root).markdown.split("| IPC 1")[1].splitlines()[0]  # DM's published IPC-1 value is 3.9
    assert "ratio % (paper)" not in build_report(root).markdown and "(" not in table.replace("(1 run)", "")


def test_evaluate_refuses_options_that_would_do_nothing_or_twice(tmp_path, capsys):
    from bench.cli.evaluate import main as evaluate_main
    from bench.data.loaders import load_dataset

    data = load_dataset("digits")
    path = tmp_path / "set.pt"
    import torch

    torch.save({"images": data.train_images[:10], "labels": data.train_labels[:10]}, path)
    assert evaluate_main([str(path), "--experiment", "3"]) == 2
    assert "--experiment 3 is for DC/DSA/DM result files" in capsys.readouterr().err
    assert evaluate_main([str(path), "--arch", "ConvNet-3", "--arch", "ConvNet-3"]) == 2
    assert "--arch lists a network twice" in capsys.readouterr().err
    torch.save({"data": [[data.train_images[:10]]]}, path)
    assert evaluate_main([str(path)]) == 2
    assert "experiment 0 of its 'data' is not an [images, labels] pair" in capsys.readouterr().err


def test_run_checks_workers_before_a_dry_run_and_refuses_control_characters(tmp_path, capsys):
    path = tmp_path / "r4.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    assert run_main([str(path), "--workers", "-1", "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert "--workers -1" in capsys.readouterr().err
    assert run_main([str(path), "--results", str(tmp_path / "a\nb"), "--dry-run"]) == 2
    assert "allowed: a path, without control characters" in capsys.readouterr().err
    assert run_main([str(path), "--data-root", "", "--dry-run"]) == 2
    assert not (tmp_path / "r").exists()


def test_max_during_on_cells_without_it_says_so(tmp_path):
    from bench.reporting.tables import build_report

    root = finished_run(tmp_path)
    assert "No max-during accuracies among the 1 finished cells" in build_report(root, accuracy="max-during").markdown


# ------------------------------------------------------------------------------------------ fifth review


def test_a_link_at_the_job_record_lock_stops_submission_before_any_job(tmp_path, capsys):
    path = tmp_path / "r4.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    root = tmp_path / "results" / "r4" / "mini"
    (root / ".locks").mkdir(parents=True)
    (root / ".locks" / "jobs.lock").symlink_to(tmp_path / "outside.lock")
    argv = ["run", str(path), "--results", str(tmp_path / "results"), "--executor", "submitit-local"]
    assert cli_main(argv) == 2
    assert "jobs.lock: it is a link leading outside the results folder" in capsys.readouterr().err
    assert not (tmp_path / "outside.lock").exists() and not (root / ".submitit").exists()


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"eval_archs": ["timm:inception_v3"]}, "'eval_archs' on digits: timm:inception_v3 cannot take 16 x 16 images"),
        (
            {"methods": ["IDC"], "profiles": {"p": {"defaults": {"engine": {"factor": 17}}}}},
            "allowed: 1, 2, 3, 4, 6, 8, 16",
        ),
    ],
)
def test_what_would_fail_after_distilling_is_refused_up_front(changes, needle):
    from bench.experiment.matrix import MatrixError, parse_matrix

    with pytest.raises(MatrixError) as info:
        parse_matrix({**MATRIX, **changes}, "r4")
    assert needle in str(info.value)


def test_a_timm_network_made_for_another_input_size_takes_the_datasets():
    import torch

    from bench.learning.networks import create_network

    net = create_network("timm:vit_tiny_patch16_224", 1, 10, 16)
    assert net(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


def test_set_refuses_a_bare_section_and_ls_names_an_unreadable_matrix(tmp_path, capsys, monkeypatch):
    path = tmp_path / "r4.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    assert run_main([str(path), "--set", "budget=null", "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert "'budget' is a section, not a setting" in capsys.readouterr().err
    (tmp_path / "matrices").mkdir()
    (tmp_path / "matrices" / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "matrices" / "odd.yaml").write_text("name: x\nprofiles: [a]\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["ls", "matrices"]) == 0
    out = capsys.readouterr().out
    assert out.count("not a readable matrix") == 2


def test_validate_checks_every_profiles_settings(tmp_path, capsys):
    from bench.cli.validate import main as validate_main

    spec = {**MATRIX, "profiles": {**MATRIX["profiles"], "other": {"defaults": {"engine": {"lr_img": -1}}}}}
    path = tmp_path / "r4.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert validate_main([str(path), "--no-data"]) == 2
    assert "profile 'other': profiles.other.defaults.engine.lr_img = -1" in capsys.readouterr().err
    assert validate_main([str(path), "-p", "mini", "--no-data"]) == 0  # one profile named: that one only
