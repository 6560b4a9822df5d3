"""Hostile inputs, second round (issue 27): YAML that repeats keys, explodes through aliases, nests without end or
is huge; settings that smuggle a bool, None, inf or a huge integer in as a number; dataset copies whose labels,
counts or shapes are wrong; sets with fractional labels or an unbounded size; figures that fail half-way; FIFOs
where a file is expected. Each is refused with one line naming what is wrong and what is allowed, quickly, and
without leaving anything half-written. Real tiny files throughout (tests/fake_datasets.py)."""

import errno
import gzip
import os
import pickle
import struct
import threading
import time
from pathlib import Path

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import yaml
from fake_datasets import write_cifar10, write_idx, write_mnist

from bench.cli.evaluate import main as evaluate_main
from bench.core.files import RefusedFileError, read_regular_text
from bench.core.safe_yaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, YamlError, load_yaml_text
from bench.data.loaders import DatasetNotFoundError, load_dataset
from bench.experiment.matrix import MatrixError, load_matrix, parse_matrix
from bench.experiment.settings import Launcher, SettingError, check_settings, engine_overrides
from bench.experiment.store import MATRIX_FILE, PLAN_FILE, read_matrix_info, read_plan
from bench.learning.evaluation import MAX_SET_BYTES, evaluate_images, load_external_set
from bench.reporting.figures import plot_steps

GRID = {"name": "h", "datasets": ["digits"], "ipc": [1], "methods": ["DC"], "archs": ["ConvNet-3"], "seeds": [0]}


def one_line(err: BaseException | str) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def returns_within(seconds: float, fn, *args):
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) when it blocks."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            out["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} blocked for more than {seconds} s"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


# ------------------------------------------------------------------------------------------------ safe YAML


def test_duplicate_keys_are_refused_with_key_and_line(tmp_path):
    text = yaml.safe_dump(GRID, sort_keys=False) + "profiles:\n  mini: {}\nseeds: [1]\n"  # 'seeds' twice
    with pytest.raises(YamlError) as info:
        load_yaml_text(text, "m.yaml")
    msg = one_line(info.value)
    assert "duplicate key 'seeds'" in msg and f"line {text.count(chr(10))}" in msg and "allowed" in msg
    nested = "profiles:\n  mini:\n    defaults: {eval_runs: 1, eval_runs: 2}\n"
    with pytest.raises(YamlError, match=r"line 3: duplicate key 'eval_runs'"):
        load_yaml_text(nested, "m.yaml")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(MatrixError, match="duplicate key 'seeds'"):
        load_matrix(path)
    # a merge key that a later key overrides is YAML's own idiom, not a duplicate
    merged = load_yaml_text("base: &b {x: 1, y: 2}\nuse: {<<: *b, x: 3}\n", "m.yaml")
    assert merged["use"] == {"x": 3, "y": 2}


def test_alias_bomb_fails_fast():
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]  # 9**9 values
    start = time.perf_counter()
    with pytest.raises(YamlError) as info:
        load_yaml_text("\n".join(lines) + "\n", "bomb.yaml")
    assert time.perf_counter() - start < 1.0
    assert "aliases expanding to more than" in one_line(info.value)
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(YamlError, match=f"more than {MAX_ALIASES} aliases"):
        load_yaml_text(many, "m.yaml")
    with pytest.raises(YamlError, match="cycle"):
        load_yaml_text("a: &a [1, *a]\n", "m.yaml")


def test_deep_nesting_and_huge_input_are_refused():
    deep = "x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(YamlError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        load_yaml_text(deep, "m.yaml")
    endless = "x: " + "[" * 200_000  # would exhaust the recursion of an unbounded composer
    with pytest.raises(YamlError, match="nesting deeper"):
        load_yaml_text(endless, "m.yaml")
    # aliases cannot get around the depth bound: each level nests the previous one
    lines = ["l0: &l0 [1]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, MAX_DEPTH + 2)]
    with pytest.raises(YamlError, match="aliases expanded"):
        load_yaml_text("\n".join(lines) + "\n", "m.yaml")
    with pytest.raises(YamlError, match=f"allowed: at most {MAX_BYTES} bytes"):
        load_yaml_text("x: '" + "a" * MAX_BYTES + "'\n", "m.yaml")
    with pytest.raises(YamlError, match="a value YAML cannot read"):
        load_yaml_text("x: 1" + "0" * 5000 + "\n", "m.yaml")  # past Python's int digit limit: one line, not a trace


def test_big_fifo_and_directory_matrix_files_are_one_line(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n# " + "x" * (2 * MAX_BYTES) + "\n")
    with pytest.raises(MatrixError, match="allowed: a file of at most"):
        load_matrix(big)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(MatrixError) as info:
        returns_within(5, load_matrix, fifo)
    assert "FIFO" in one_line(info.value) and "allowed: a regular file" in str(info.value)
    with pytest.raises(MatrixError, match="a directory; allowed: a regular file"):
        load_matrix(tmp_path)
    link = tmp_path / "link.yaml"
    link.symlink_to(fifo)
    with pytest.raises(MatrixError, match="FIFO"):
        returns_within(5, load_matrix, link)


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "defaults,needle",
    [
        ({"lr_img": False}, "lr_img = False must be float; allowed: a finite number > 0"),
        ({"eval_runs": True}, "eval_runs = True must be int"),
        ({"per_class_step": 1}, "per_class_step = 1 must be bool; allowed: true or false"),
        ({"batch_syn_max": "all"}, "batch_syn_max = 'all' must be int; allowed: an integer >= 1"),
        ({"batch_syn_max": 2.5}, "batch_syn_max = 2.5 must be int"),
        ({"momentum_img": float("inf")}, "momentum_img = inf; allowed: a finite number >= 0"),
        ({"net_weight_decay": float("nan")}, "net_weight_decay = nan; allowed: a finite number >= 0"),
        ({"feature_seed": 2**40}, "feature_seed = 1099511627776; allowed: an integer >= 0 and < 2**31"),
        ({"iterations": 2**31}, "iterations = 2147483648; allowed: an integer >= 1 and < 2**31"),
        ({"match_aug": "crop_" * 300}, "(1500 characters); allowed: a string of at most 1024 characters"),
        ({"objective": {"gradient_weight": float("inf")}}, "objective.gradient_weight = inf; allowed: a finite number"),
    ],
)
def test_settings_refuse_bools_wrong_types_non_finite_and_huge_values(defaults, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**GRID, "profiles": {"p": {"defaults": defaults}}}, "h")
    assert needle in one_line(info.value)


def test_null_is_unset_except_where_the_field_allows_none():
    assert check_settings("d", {"batch_syn_max": None, "lr_img": None}, []) == {"batch_syn_max": None, "lr_img": None}
    assert engine_overrides({"batch_syn_max": None, "lr_img": None, "net_lr": 0.1}) == {
        "batch_syn_max": None,
        "net_lr": 0.1,
    }
    assert check_settings("d", {"batch_syn_max": 64, "lr_img": 1}, []) == {"batch_syn_max": 64, "lr_img": 1}


def test_yaml_inf_and_huge_integers_from_a_matrix_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(GRID) + "profiles:\n  p:\n    defaults:\n      engine: {lr_img: .inf}\n")
    with pytest.raises(MatrixError, match=r"lr_img = inf; allowed: a finite number > 0"):
        load_matrix(path)
    path.write_text(yaml.safe_dump(GRID) + "profiles:\n  p:\n    defaults:\n      budget: {feature_seed: 9999999999}\n")
    with pytest.raises(MatrixError, match="feature_seed = 9999999999; allowed: an integer >= 0 and < 2\\*\\*31"):
        load_matrix(path)


@pytest.mark.parametrize(
    "launcher,needle",
    [
        ({"workers": True}, "launcher.workers = True must be int"),
        ({"timeout_min": 2**40}, "launcher.timeout_min = 1099511627776; allowed: an integer >= 1 and < 2**31"),
        ({"partition": 7}, "launcher.partition = 7 must be str"),
        ({"setup": ["module load cuda", 3]}, "launcher.setup[1] = 3 must be str"),
        ({"additional_parameters": {"mem": float("inf")}}, "launcher.additional_parameters.mem = inf"),
    ],
)
def test_launcher_values_are_checked_like_settings(launcher, needle):
    with pytest.raises(SettingError) as info:
        Launcher.parse(launcher)
    assert needle in one_line(info.value)
    assert Launcher.parse({"executor": None, "mem_gb": None}) == Launcher()


# ------------------------------------------------------------------------------------------------ dataset copies


def _mnist_with(tmp_path: Path, **files: np.ndarray) -> Path:
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for name, array in files.items():
        write_idx(raw / f"{name.replace('_', '-')}-ubyte", array)
    return raw


@pytest.mark.parametrize(
    "files,needle",
    [
        (
            {"t10k_labels_idx1": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10], dtype=np.uint8)},
            "t10k labels must lie in [0, 9], found 0..10",
        ),
        ({"train_labels_idx1": np.arange(19, dtype=np.uint8) % 10}, "train: 20 images but labels of shape (19,)"),
        (
            {"t10k_images_idx3": np.zeros((10, 27, 27), dtype=np.uint8)},
            "t10k images of 1 x 27 x 27; mnist has 1 x 28 x 28",
        ),
        ({"train_labels_idx1": np.zeros((20, 1), dtype=np.uint8)}, "has 2 dimensions; allowed: 1 (labels)"),
    ],
)
def test_decompressed_mnist_copies_are_checked(tmp_path, files, needle):
    raw = _mnist_with(tmp_path, **files)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", root=tmp_path)
    msg = one_line(info.value)
    assert needle in msg and str(raw) in msg and "corrupt" in msg


def test_train_and_test_must_agree_in_shape(tmp_path):
    """A train split of 32 x 32 next to a test split of 28 x 28: refused, naming the split and the expected size."""
    raw = _mnist_with(tmp_path, train_images_idx3=np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError, match="train images of 1 x 32 x 32; mnist has 1 x 28 x 28"):
        load_dataset("mnist", root=tmp_path)
    assert (raw / "t10k-images-idx3-ubyte").is_file()


def test_a_gzip_header_claiming_billions_of_values_is_refused_before_reading(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-images-idx3-ubyte").unlink()
    header = struct.pack(">I", 0x0803) + struct.pack(">3I", 1 << 24, 28, 28)  # 13 billion bytes promised
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(100)))
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError, match="more than 2147483648 values"):
        load_dataset("mnist", root=tmp_path, verify=False)
    assert time.perf_counter() - start < 2


def test_fractional_labels_in_a_cifar_copy_are_refused_not_truncated(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    entry = pickle.loads(batch.read_bytes(), encoding="latin1")
    entry["labels"] = [x + 0.5 for x in entry["labels"]]
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path, verify=False)
    assert "labels must be integers, found 8.5" in one_line(info.value)  # batch 2's first label, not 8


def test_valid_copies_load_unchanged(tmp_path):
    ref = write_mnist(tmp_path)
    ds = load_dataset("mnist", root=tmp_path)
    assert torch.equal(ds.train_images, torch.from_numpy(ref["train_x"]).float().div(255).unsqueeze(1))
    assert ds.test_labels.tolist() == ref["t10k_y"].tolist()


# ------------------------------------------------------------------------------------------------ evaluate


def test_evaluate_refuses_fractional_labels_before_training(tmp_path, capsys):
    path = tmp_path / "set.pt"
    torch.save({"images": torch.rand(10, 1, 16, 16), "labels": torch.arange(10).float() + 0.5}, path)
    assert evaluate_main([str(path), "--dataset", "digits", "--epochs", "1", "--runs", "1"]) == 2
    captured = capsys.readouterr()
    assert "labels must be integers (class indices), found 0.5" in one_line(captured.err.strip())
    assert "ConvNet-3:" not in captured.out
    torch.save({"images": torch.rand(10, 1, 16, 16), "labels": torch.arange(10).float()}, path)
    images, labels, _ = load_external_set(str(path))
    assert labels.dtype == torch.int64 and labels.tolist() == list(range(10))  # integral floats are fine


def test_evaluate_refuses_oversized_sets_before_loading_or_converting(tmp_path, capsys):
    big = tmp_path / "big.pt"
    with open(big, "wb") as fh:  # sparse: 2 GiB + 1 byte on paper, nothing on disk
        fh.truncate(MAX_SET_BYTES + 1)
    assert evaluate_main([str(big), "--dataset", "digits"]) == 2
    assert f"allowed: a set file of at most {MAX_SET_BYTES} bytes" in one_line(capsys.readouterr().err.strip())
    # a few kilobytes that a stride-0 view turns into 10 million images: refused before .float() allocates 10 GB
    bomb = tmp_path / "bomb.pt"
    torch.save(
        {
            "images": torch.zeros(1, 1, 16, 16).expand(10**7, 1, 16, 16),
            "labels": torch.zeros(1, dtype=torch.long).expand(10**7),
        },
        bomb,
    )
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ValueError, match="10000000 images of 1 x 16 x 16 .*allowed: at most 1000000 images"):
        load_external_set(str(bomb))
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    assert returns_within(5, evaluate_main, [str(fifo), "--dataset", "digits"]) == 2
    assert "FIFO" in capsys.readouterr().err


def test_evaluate_images_checks_before_training():
    data = load_dataset("digits", max_per_class=5)
    images = data.train_images[:10]
    with pytest.raises(ValueError, match="labels must be integers"):
        evaluate_images(images, torch.full((10,), 0.5), data, runs=1, epochs=1)
    with pytest.raises(ValueError, match="runs = 0"):
        evaluate_images(images, data.train_labels[:10], data, runs=0)
    with pytest.raises(ValueError, match="unknown evaluation protocol 'Z'"):
        evaluate_images(images, data.train_labels[:10], data, protocol="Z")
    result = evaluate_images(images, data.train_labels[:10], data, protocol="A-noaug", runs=1, epochs=1)
    assert len(result.runs) == 1 and 0 <= result.mean <= 100


def test_evaluate_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        evaluate_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in (
        "--dataset",
        "--data-root",
        "--arch",
        "--protocol",
        "--epochs",
        "--runs",
        "--factor",
        "--seed",
        "--experiment",
    ):
        start = text.index(option + " ", text.index("options:"))
        assert len(text[start : start + 60].split()) > 3, option  # each has a help text
    assert "default: B" in text and "A-noaug" in text and "A-dc" in text and "default: 5" in text


# ------------------------------------------------------------------------------------------------ figures


def test_a_failed_figure_write_leaves_the_old_figure_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "continual.png"
    old = os.umask(0o022)
    try:
        plot_steps({"DC": [[40.0, 42.0], [50.0]]}, target, "first")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644  # the user's umask, not mkstemp's 0600
    good = target.read_bytes()
    assert good.startswith(b"\x89PNG")

    def disk_full(self, fname, *args, **kwargs):
        fname.write(b"\x89PNG half a figure")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", disk_full)
    with pytest.raises(OSError, match="No space"):
        plot_steps({"DC": [[41.0], [51.0]]}, target, "second")
    monkeypatch.undo()
    assert target.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["continual.png"]
    with pytest.raises(ValueError):  # a title matplotlib cannot lay out: fails before any file is made
        plot_steps({"DC": [[41.0], [51.0]]}, tmp_path / "new.png", r"$\nosuchcommand{$")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["continual.png"] and not plt.get_fignums()


# ------------------------------------------------------------------------------------------------ results folder


def test_a_fifo_named_like_the_folder_files_does_not_block_the_report(tmp_path):
    os.mkfifo(tmp_path / MATRIX_FILE)
    os.mkfifo(tmp_path / PLAN_FILE)
    assert returns_within(5, read_matrix_info, tmp_path) == {}
    assert returns_within(5, read_plan, tmp_path) is None
    with pytest.raises(RefusedFileError, match="FIFO"):
        returns_within(5, read_regular_text, tmp_path / MATRIX_FILE, 100)
    (tmp_path / "x.json").write_text("{}" + " " * 200)
    with pytest.raises(RefusedFileError, match="202 bytes; allowed: a file of at most 100 bytes"):
        read_regular_text(tmp_path / "x.json", 100)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MATRIX_FILE).write_text('{"layout": "table1"}')
    assert read_matrix_info(tmp_path / "m") == {"layout": "table1"}


# ------------------------------------------------------------------------------------------ third round
# Values that used to pass `validate` and fail only when a cell ran, and matrix entries that silently did nothing.


@pytest.mark.parametrize(
    "defaults,needle",
    [
        ({"engine": {"match_aug": "color_crpo"}}, "engine.match_aug = 'color_crpo'; allowed: '' (none) or families"),
        ({"engine": {"net_aug": "flip__zoom"}}, "engine.net_aug = 'flip__zoom'; allowed"),
        ({"engine": {"lr_img": 1e300}}, "engine.lr_img = 1e+300; allowed: a finite number > 0 and <= 1e+06"),
        ({"engine": {"net_momentum": 1.5}}, "engine.net_momentum = 1.5; allowed: a finite number >= 0 and <= 1"),
        ({"continual": {"protocol": "icarl"}}, "continual.protocol = 'icarl'; allowed: ['idc', 'dc']"),
        ({"continual": {"eval_arch": "ConvNet-99x"}}, "continual.eval_arch has unknown architecture 'ConvNet-99x'"),
        ({"evaluation": {"runs": 0}}, "defaults.evaluation.runs = 0; allowed: an integer >= 1"),  # as written
    ],
)
def test_values_that_failed_only_at_run_time_are_refused_up_front(defaults, needle):
    with pytest.raises(MatrixError) as info:  # a continual matrix: continual settings apply there only
        parse_matrix({**GRID, "task": "continual", "profiles": {"p": {"defaults": defaults}}}, "h")
    assert needle in one_line(info.value)


def test_continual_steps_must_divide_the_classes():
    matrix = {**GRID, "task": "continual", "profiles": {"p": {"defaults": {"continual": {"steps": 3}}}}}
    with pytest.raises(MatrixError, match="continual.steps = 3 cannot split digits's 10 classes"):
        parse_matrix(matrix, "h")
    assert parse_matrix({**matrix, "profiles": {"p": {"defaults": {"continual": {"steps": 2}}}}}, "h").cells


@pytest.mark.parametrize(
    "profile,needle",
    [
        ({"exclude": [{"method": "DSA"}]}, "names method 'DSA', which is not in the grid of profile 'p'"),
        ({"exclude": [{"ipc": [1, 7]}]}, "names ipc 7, which is not in the grid"),
        ({"methods": {"DC": {"per_ipc": {10: {"budget": {"iterations": 2}}}}}}, "DC.per_ipc.10 names IPC 10"),
        ({"methods": {"DC/ipc10": {"budget": {"iterations": 2}}}}, "names IPC 10, which is not in 'ipc'"),
        (
            {"methods": {"DC": {"per_ipc": {1: {}}}, "DC/ipc1": {}}},
            "DC.per_ipc.1 and DC/ipc1 both set DC/ipc1; allowed: one of them",
        ),
    ],
)
def test_entries_that_would_do_nothing_or_override_each_other_are_refused(profile, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**GRID, "profiles": {"p": profile}}, "h")
    assert needle in one_line(info.value)


def test_a_top_level_exclude_may_name_what_another_profile_grids():
    matrix = {
        **GRID,
        "ipc": [1, 10],
        "exclude": [{"ipc": 10, "method": "DC"}],
        "profiles": {"p": {"grid": {"ipc": [1]}}},
    }
    assert [c.ipc for c in parse_matrix(matrix, "h").cells] == [1]
    with pytest.raises(MatrixError, match="names ipc 50"):
        parse_matrix({**matrix, "exclude": [{"ipc": 50}]}, "h")


@pytest.mark.parametrize(
    "name,needle",
    [
        ("DC+rm+rm", "write 'DC+rm'"),
        ("DC+init+rm", "write 'DC+rm+init'"),
        ("DREAM+rm", "'DREAM' already includes rm; write 'DREAM'"),
        ("DREAM++bm", "'DREAM+' already includes bm"),
    ],
)
def test_one_method_has_one_name(name, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**GRID, "methods": [name]}, "h")
    assert needle in one_line(info.value)
    assert parse_matrix({**GRID, "methods": ["DC+rm+init", "DREAM+bm"]}, "h").cells


def test_a_page_title_or_description_cannot_add_lines(tmp_path):
    from bench.cli.report import main as report_main

    folder = tmp_path / "results"
    folder.mkdir()
    for option in (["--title", "ok\n# injected"], ["--description", "a\rb"], ["--title", "x" * 201]):
        assert report_main([str(folder), "--publish", str(tmp_path / "pages" / "p"), *option]) == 2
    assert not (tmp_path / "pages").exists()


def test_a_refused_tensor_file_says_one_line_without_torch_warnings(tmp_path, capsys, recwarn):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "set.pt"
    path.write_bytes(pickle.dumps({"x": Payload()}))  # a plain pickle: torch warns about its protocol first
    assert evaluate_main([str(path)]) == 2
    captured = capsys.readouterr()
    assert "ran" not in captured.out
    assert len(captured.err.strip().splitlines()) == 1
    assert not [w for w in recwarn if "pickle" in str(w.message).lower()]


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"profiles": {"p": {"defaults": {"continual": {"steps": 2}}}}}, "continual.steps set for a 'distill' matrix"),
        (
            {"profiles": {"p": {"defaults": {"evaluation": {"curve_epochs": 5}}}}},
            "evaluation.curve_epochs is set without budget.eval_every",
        ),
        ({"exclude": [{"method": []}]}, "gives method an empty list, which matches nothing"),
        ({"name": None}, "name = None; allowed: a string name"),
        ({"name": True}, "name = True; allowed"),
        ({"task": "continual", "separate_evaluation": True}, "separate_evaluation: true with task: continual"),
        ({"variants": {1: {}, "1": {}}}, "'variants' names one variant twice"),
        ({"eval_archs": ["ConvNet-3", "ConvNet-3"]}, "'eval_archs' lists a network twice"),
        (
            {
                "task": "continual",
                "datasets": ["cifar100"],
                "profiles": {"p": {"data_fallback": "digits", "defaults": {"continual": {"steps": 4}}}},
            },
            "continual.steps = 4 cannot split digits's 10 classes",  # the data the cell may fall back to
        ),
    ],
)
def test_settings_that_would_be_ignored_or_merged_silently_are_refused(changes, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**GRID, **changes}, "h")
    assert needle in one_line(info.value)


def test_empty_command_line_values_are_refused_not_defaulted(tmp_path, capsys):
    from bench.cli.run import main as run_main
    from bench.cli.validate import main as validate_main

    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump({**GRID, "launcher": {"executor": "Local"}}))
    assert validate_main([str(matrix), "--no-data"]) == 2
    assert "launcher.executor = 'Local'" in capsys.readouterr().err
    matrix.write_text(yaml.safe_dump(GRID))
    for extra, needle in (
        (["--set", "budget.iterations="], "has no value"),
        (["-p", ""], "-p ''"),
        (["--only", ""], "empty pattern"),
    ):
        assert run_main([str(matrix), "--results", str(tmp_path / "r"), "--dry-run", *extra]) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_report_never_overwrites_an_index_or_claims_file_it_did_not_write(tmp_path):
    from bench.cli.report import main as report_main

    pages = tmp_path / "pages"
    (pages / "a").mkdir(parents=True)
    (pages / "a" / "page.json").write_text("{}")
    (pages / "index.md").write_text("USER INDEX")
    assert report_main(["--index", str(pages)]) == 2
    assert (pages / "index.md").read_text() == "USER INDEX" and not (pages / "claims.md").exists()
    empty = tmp_path / "notes"
    empty.mkdir()
    assert report_main(["--index", str(empty)]) == 2 and not any(empty.iterdir())  # not a folder of pages
    assert report_main(["--readme", str(tmp_path / "README.md"), str(tmp_path)]) == 2  # --readme needs --index


def test_ctrl_c_while_a_subcommand_loads_is_one_line(monkeypatch, capsys):
    import importlib

    from bench.cli.main import main as cli_main

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted)
    assert cli_main(["status", "x"]) == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ fourth round
# What the third round's review left: a flag that did nothing, folder files that were ignored without a word, and
# messages that pointed the wrong way.


def test_resume_is_refused_with_what_to_do_instead(tmp_path, capsys):
    from bench.cli.run import main as run_main

    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(GRID))
    assert run_main([str(matrix), "--results", str(tmp_path / "r"), "--resume"]) == 2
    err = one_line(capsys.readouterr().err.strip())
    assert "--resume is not needed" in err and "re-run the same command" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "m.yaml", "--bogus"], "dreambench run: unrecognized arguments: --bogus; see dreambench run --help"),
        (["run"], "the following arguments are required: matrix"),
        (["evaluate", "x.pt", "--runs", "0"], "argument --runs: 0 is not allowed"),
        (["status", "--executor", "x"], "dreambench status: unrecognized arguments"),
    ],
)
def test_a_bad_flag_is_one_line_not_a_usage_block(argv, needle, capsys):
    from bench.cli.main import main as cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in one_line(err.strip()) and "usage:" not in err


@pytest.mark.parametrize(
    "content,needle",
    [("garbage", "JSONDecodeError"), ('{"a": 1}', "not what the harness writes there"), ("[1, 2]", "not what")],
)
def test_an_unreadable_plan_or_matrix_file_is_named_not_ignored(tmp_path, content, needle):
    warnings: list[str] = []
    for name, read in ((PLAN_FILE, read_plan), (MATRIX_FILE, read_matrix_info)):
        (tmp_path / name).write_text(content)
        assert not read(tmp_path, warnings.append)
    assert len(warnings) == 2 and all(needle in one_line(w) and "rewrites it" in w for w in warnings)
    assert "cell folders are read instead" in warnings[0] and "table layout" in warnings[1]
    (tmp_path / PLAN_FILE).unlink()
    (tmp_path / MATRIX_FILE).unlink()
    assert read_plan(tmp_path, warnings.append) is None and read_matrix_info(tmp_path, warnings.append) == {}
    assert len(warnings) == 2  # no file: nothing to warn about


def test_status_and_report_say_when_the_plan_is_unreadable(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "r" / "h" / "mini"
    root.mkdir(parents=True)
    (root / PLAN_FILE).write_text("garbage")
    for command in (["status", str(root)], ["report", str(root)]):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.cli.main", *command], capture_output=True, text=True, timeout=120
        )
        assert f"warning: {root / PLAN_FILE} is unreadable (JSONDecodeError)" in proc.stderr, proc.stderr
        assert proc.stderr.count("is unreadable") == 1


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda x: x.to_sparse(), "images are a sparse_coo tensor; allowed: dense tensors"),
        (lambda x: torch.empty(x.shape, device="meta"), "images are a meta tensor"),
        (lambda x: (x * 255).to(torch.uint8), "images of dtype torch.uint8; allowed: floating-point pixels in [0, 1]"),
    ],
)
def test_evaluate_names_what_is_wrong_with_the_images(tmp_path, capsys, make, needle):
    data = load_dataset("digits")
    path = tmp_path / "set.pt"
    torch.save({"images": make(data.train_images[:10].clone()), "labels": data.train_labels[:10]}, path)
    assert evaluate_main([str(path), "--runs", "1", "--epochs", "1"]) == 2
    captured = capsys.readouterr()
    assert needle in one_line(captured.err.strip()) and not captured.out


def test_evaluate_names_numpy_files_and_how_to_convert_them(tmp_path, capsys):
    data = load_dataset("digits")
    images, labels = data.train_images[:10].numpy(), data.train_labels[:10].numpy()
    np.save(tmp_path / "set.npy", images)
    np.savez(tmp_path / "set.npz", images=images, labels=labels)
    for name, kind in (("set.npy", ".npy"), ("set.npz", ".npz")):
        assert evaluate_main([str(tmp_path / name)]) == 2
        err = one_line(capsys.readouterr().err.strip())
        assert f"a NumPy {kind} file; allowed: a torch file" in err and "torch.from_numpy" in err
    torch.save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)}, tmp_path / "set.pt")
    assert load_external_set(str(tmp_path / "set.pt"), data)[0].shape == (10, *images.shape[1:])  # the advice works


@pytest.mark.parametrize(
    "name,needle",
    [
        ("DC+RM", "components are lowercase: write 'DC+rm'"),
        ("DM+INIT+RM", "write 'DM+rm+init'"),
        ("DREAM+RM", "write 'DREAM'"),
    ],
)
def test_an_uppercase_component_gets_the_name_it_meant(name, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**GRID, "methods": [name]}, "h")
    assert needle in one_line(info.value) and "did you mean" not in str(info.value)


def test_per_ipc_errors_name_the_key_as_written():
    profile = {"methods": {"DC": {"per_ipc": {1: {"lr_img": -1}}}}}
    with pytest.raises(MatrixError) as info:
        parse_matrix({**GRID, "profiles": {"p": profile}}, "h")
    assert one_line(info.value).startswith("profiles.p.methods.DC.per_ipc.1.lr_img = -1")


@pytest.mark.parametrize(
    "pair,needle",
    [
        ("launcher.workers=2", "'launcher' is not a section of cell settings (launcher settings: --workers"),
        ("foo.bar=1", "'foo' is not a section of cell settings; allowed sections: budget, evaluation"),
    ],
)
def test_set_names_a_section_that_is_not_one(tmp_path, capsys, pair, needle):
    from bench.cli.run import main as run_main

    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(GRID))
    assert run_main([str(matrix), "--results", str(tmp_path / "r"), "--dry-run", "--set", pair]) == 2
    assert needle in one_line(capsys.readouterr().err.strip())
