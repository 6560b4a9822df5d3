"""Hostile inputs, sixth review (issue 27): a published page replaced by a smaller or different run, evaluation
networks and factors that fail or pad, messages that misled. Real tiny runs on the embedded digits."""

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
import yaml

from bench.cli.evaluate import main as evaluate_main
from bench.cli.main import main as cli_main
from bench.cli.report import main as report_main
from bench.cli.run import main as run_main
from bench.experiment.matrix import MatrixError, cell_cap, parse_matrix

MATRIX = {
    "name": "r6",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random"],
    "archs": ["ConvNet-3"],
    "seeds": [0, 1],
    "profiles": {"mini": {"max_per_class": 20, "defaults": {"evaluation": {"epochs": 1, "runs": 1}}}},
}


def run(tmp_path: Path, results: str, *extra: str) -> Path:
    path = tmp_path / "r6.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert run_main([str(path), "--results", str(tmp_path / results), *extra]) == 0
    return tmp_path / results / "r6" / "mini"


def publish(root: Path, page: Path, *extra: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return report_main([str(root), "--publish", str(page), *extra])


def test_a_page_is_not_replaced_by_a_run_lacking_its_measurements_or_under_other_settings(tmp_path, capsys):
    full = run(tmp_path, "full")
    page = tmp_path / "pages" / "p"
    assert publish(full, page, "--title", "Random over 2 seeds", "--description", "the real run") == 0
    before = {p.name: p.read_bytes() for p in page.iterdir()}
    smoke = run(tmp_path, "smoke", "--only", "*s0")
    assert publish(smoke, page) == 2
    assert "the run lacks 1 of the page's 2 measurements (digits_ipc1_Random_ConvNet-3_s1" in capsys.readouterr().err
    other = run(tmp_path, "other", "--set", "evaluation.epochs=2")
    assert publish(other, page) == 2
    assert "2 of the page's measurements ran under other settings" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in page.iterdir()} == before  # nothing of the page changed
    assert publish(full, page) == 0  # the same run again keeps the page's words
    meta = json.loads((page / "page.json").read_text())
    assert (meta["title"], meta["description"]) == ("Random over 2 seeds", "the real run")
    assert publish(other, page, "--replace") == 0  # replacing on purpose: the old words do not describe it
    meta = json.loads((page / "page.json").read_text())
    assert (meta["title"], meta["description"]) == ("r6/mini", "")


def test_a_run_folder_that_does_not_name_its_matrix_cannot_publish(tmp_path, capsys):
    root = run(tmp_path, "full")
    (root / ".matrix.json").unlink()
    assert publish(root, tmp_path / "pages" / "p") == 2
    assert "does not name its matrix and profile" in capsys.readouterr().err
    assert not (tmp_path / "pages").exists()


@pytest.mark.parametrize("extra,needle", [(["--title", "   "], "allowed: a title with words"), (["--replace"], None)])
def test_a_blank_title_is_refused_and_replace_needs_publish(tmp_path, capsys, extra, needle):
    root = run(tmp_path, "full")
    argv = [str(root), *extra] if needle is None else [str(root), "--publish", str(tmp_path / "p"), *extra]
    assert report_main(argv) == 2
    assert (needle or "--replace works with --publish") in capsys.readouterr().err


def test_an_empty_description_clears_the_pages(tmp_path):
    root = run(tmp_path, "full")
    page = tmp_path / "pages" / "p"
    assert publish(root, page, "--description", "words") == 0
    assert publish(root, page, "--description", "") == 0
    assert json.loads((page / "page.json").read_text())["description"] == ""


def test_the_index_does_not_claim_to_come_from_docs_results(tmp_path):
    root = run(tmp_path, "full")
    assert publish(root, tmp_path / "elsewhere" / "p") == 0
    assert "--index docs/results" not in (tmp_path / "elsewhere" / "index.md").read_text()


def digits_set(tmp_path: Path) -> Path:
    from bench.data.loaders import load_dataset

    data = load_dataset("digits")
    path = tmp_path / "set.pt"
    torch.save({"images": data.train_images[:10], "labels": data.train_labels[:10]}, path)
    return path


@pytest.mark.parametrize(
    "arch,needle",
    [
        ("timm:convnext_atto", "timm:convnext_atto cannot take 16 x 16 images with 1 channel(s)"),
        ("timm:deit_tiny_distilled_patch16_224", "has a two-part (distillation) head"),
        ("timm:resnet18.a1_in1k", "a '.tag' names pretrained weights, which the harness never loads"),
    ],
)
def test_evaluate_refuses_a_network_that_cannot_take_the_set_in_one_line(tmp_path, capsys, arch, needle):
    assert evaluate_main([str(digits_set(tmp_path)), "--epochs", "1", "--runs", "1", "--arch", arch]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_evaluate_refuses_a_factor_that_decodes_padding(tmp_path, capsys):
    assert evaluate_main([str(digits_set(tmp_path)), "--factor", "5", "--runs", "1"]) == 2
    assert "leaves patches of padding only; allowed: 1, 2, 3, 4, 6, 8, 16" in capsys.readouterr().err


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"methods": ["IDC"], "profiles": {"p": {"defaults": {"engine": {"factor": 5}}}}}, "leaves patches of padding"),
        ({"eval_archs": ["timm:resnet18", "timm:resnet18.a1_in1k"]}, "names pretrained weights"),
        ({"eval_archs": ["timm:levit_128"]}, "'eval_archs' on digits: timm:levit_128 has a two-part"),
    ],
)
def test_factors_with_padding_patches_and_pretrained_tags_are_refused(changes, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**MATRIX, **changes}, "r6")
    assert needle in str(info.value)


def test_a_factor_dividing_no_side_but_padding_no_patch_is_allowed():
    matrix = parse_matrix(
        {**MATRIX, "methods": ["IDC"], "profiles": {"p": {"defaults": {"engine": {"factor": 3}}}}}, "r6"
    )
    assert {c.settings["factor"] for c in matrix.cells} == {3}


def test_yaml_1_2_octal_is_refused_and_dates_are_strings():
    from bench.core.safe_yaml import YamlError, load_yaml_text

    with pytest.raises(YamlError, match="'0o1' is a number only in octal"):
        load_yaml_text("ipc: [0o1]", "m.yaml")
    raw = load_yaml_text(yaml.safe_dump({**MATRIX, "name": "x"}).replace("name: x", "name: 2024-05-01"), "m.yaml")
    assert parse_matrix(raw, "m").name == "2024-05-01"


def test_the_cell_cap_takes_ascii_digits_only(monkeypatch):
    monkeypatch.setenv("DREAMBENCH_MAX_CELLS", "٣")
    with pytest.raises(MatrixError, match="DREAMBENCH_MAX_CELLS"):
        cell_cap(None)


def test_a_folder_at_the_plan_file_is_one_line_before_any_work(tmp_path, capsys):
    path = tmp_path / "r6.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    (tmp_path / "r" / "r6" / "mini" / ".cells.json").mkdir(parents=True)
    assert cli_main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder where the run writes its own file" in err[0]
    assert sorted(p.name for p in (tmp_path / "r" / "r6" / "mini").iterdir()) == [".cells.json"]


def test_validate_checks_other_profiles_ipcs_against_the_data_here(tmp_path, capsys):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({**MATRIX, "profile": "p", "profiles": {"p": {}, "q": {"grid": {"ipc": [5000]}}}}))
    assert cli_main(["validate", str(path)]) == 2
    assert "profile 'q': ipc 5000" in capsys.readouterr().err


def test_slurm_without_a_controller_is_one_line_with_nothing_submitted(tmp_path, capsys, monkeypatch):
    """An sbatch that cannot reach its controller (as on a login node whose slurmctld is down): the command's own
    failure, in one line, and no job recorded."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun", "squeue", "sacct", "scancel"):
        fake = bin_dir / tool
        fake.write_text(
            "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Unable to contact slurm controller' >&2\n"
            "exit 1\n"
        )
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    path = tmp_path / "r6.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    assert cli_main(["run", str(path), "--results", str(tmp_path / "r"), "--executor", "slurm"]) == 2
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert (
        "Traceback" not in stderr
        and len(err) == 1
        and "slurm submission failed" in err[0]
        and "nothing was submitted" in err[0]
    )
    assert "Unable to contact slurm controller" in err[0]
    jobs = tmp_path / "r" / "r6" / "mini" / ".jobs.json"
    assert not jobs.exists() or json.loads(jobs.read_text()) == {}
