"""Matrix expansion and every class of malformed matrix: one line, exit code 2, nothing written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.experiment.matrix import MatrixError, load_matrix, parse_matrix

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "name": "t",
    "datasets": ["digits"],
    "ipc": [1, 10],
    "methods": ["Random", "DC", "IDC+rm+init"],
    "archs": ["ConvNet-3"],
    "seeds": [0, 1],
    "profiles": {
        "mini": {
            "defaults": {"iterations": 3, "eval_epochs": 5},
            "methods": {"DC": {"iterations": 2}, "DC/ipc10": {"iterations": 1}},
        },
        "paper": {},
    },
}


def test_expansion_counts_ids_and_overrides():
    m = parse_matrix(GOOD, "t", "mini")
    assert len(m.cells) == 1 * 2 * 3 * 1 * 2
    ids = [c.id for c in m.cells]
    assert len(set(ids)) == len(ids)
    assert "digits_ipc1_IDC+rm+init_ConvNet-3_s0" in ids
    dc1 = next(c for c in m.cells if c.method == "DC" and c.ipc == 1)
    dc10 = next(c for c in m.cells if c.method == "DC" and c.ipc == 10)
    rnd = next(c for c in m.cells if c.method == "Random")
    idc = next(c for c in m.cells if c.method == "IDC+rm+init")
    assert dc1.budget().iterations == 2 and dc10.budget().iterations == 1 and idc.budget().iterations == 3
    assert rnd.budget().iterations is None  # Random never reads it: its cells do not carry it
    assert parse_matrix(GOOD, "t", "mini").cells[0].id == m.cells[0].id  # stable


def test_max_per_class_per_profile_and_per_method():
    raw = _with(
        profiles={
            "mini": {
                "max_per_class": 50,
                "methods": {"DC": {"max_per_class": 9, "iterations": 2}, "IDC+rm+init/ipc10": {"max_per_class": 7}},
            }
        }
    )
    pools = {(c.method, c.ipc): c.max_per_class for c in parse_matrix(raw, "t").cells}
    assert pools == {
        ("Random", 1): 50,
        ("Random", 10): 50,
        ("DC", 1): 9,
        ("DC", 10): 9,
        ("IDC+rm+init", 1): 50,
        ("IDC+rm+init", 10): 7,
    }
    dc = next(c for c in parse_matrix(raw, "t").cells if c.method == "DC")
    assert "max_per_class" not in dc.settings and dc.budget().iterations == 2


def test_first_profile_is_the_default():
    assert parse_matrix(GOOD, "t").profile == "mini"


def _with(**changes):
    raw = {**GOOD, **changes}
    return {k: v for k, v in raw.items() if v is not None}


BAD = [
    (_with(colour="red"), "unknown key 'colour'"),
    (_with(methods=["DC", "DCX"]), "unknown method 'DCX'"),
    (_with(methods=["DC+xx"]), "unknown component 'xx'"),
    (_with(methods=["Random+rm"]), "needs a matching base"),
    (_with(datasets=["imagenet21k"]), "unknown dataset 'imagenet21k'"),
    (_with(archs=["ConvNet-99"]), "unknown architecture 'ConvNet-99'"),
    (_with(ipc=["ten"]), "'ipc' has 'ten'"),
    (_with(ipc=[0]), "'ipc' has 0"),
    (_with(seeds=[]), "'seeds' is empty"),
    (_with(seeds=None), "missing field 'seeds'"),
    (_with(profiles={"mini": {"defaults": {"iterations": "many"}}}), "iterations = 'many' must be int"),
    (_with(profiles={"mini": {"defaults": {"lr_imgg": 1}}}), "unknown setting 'lr_imgg'"),
    (_with(profiles={"mini": {"speed": 1}}), "unknown key 'speed'"),
    (_with(profiles={"mini": {"methods": {"DM": {"iterations": 1}}}}), "names 'DM'"),
    (_with(profiles={"mini": {"defaults": {"sampler": 3}}}), "sampler = 3 must be str"),
    (
        _with(profiles={"mini": {"defaults": {"sampler": "greedy"}}}),
        "sampler = 'greedy'; allowed: ['random', 'representative']",
    ),
    (
        _with(profiles={"mini": {"methods": {"DC": {"precision": "fp16"}}}}),
        "DC.precision = 'fp16'; allowed: ['float32', 'bfloat16']",
    ),
    (_with(profiles={"mini": {"max_per_class": 0}}), "max_per_class = 0; allowed: an integer >= 1"),
    (_with(profiles={"mini": {"methods": {"DC": {"max_per_class": "all"}}}}), "DC.max_per_class = 'all'"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=[m for _, m in BAD])
def test_malformed_matrix_names_key_and_allowed_values(raw, message):
    with pytest.raises(MatrixError) as info:
        parse_matrix(raw, "t", None)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_unknown_profile_lists_profiles():
    with pytest.raises(MatrixError, match=r"unknown profile 'huge'; allowed: \['mini', 'paper'\]"):
        parse_matrix(GOOD, "t", "huge")


def test_cli_malformed_matrix_exit_2_one_line_nothing_written(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(methods=["DC", "NotAMethod"])))
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", str(bad), "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NotAMethod" in lines[0] and "allowed" in lines[0]
    assert not results.exists()


def test_cli_invalid_yaml_and_missing_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("datasets: [digits\n")
    for path in (broken, tmp_path / "absent.yaml"):
        with pytest.raises(MatrixError):
            load_matrix(path)


def test_every_shipped_matrix_is_valid():
    for path in sorted((ROOT / "matrices").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        for profile in raw.get("profiles") or {"default": None}:
            assert parse_matrix(raw, path.stem, profile).cells


def test_variants_exclude_and_separate_evaluation():
    raw = {
        **GOOD,
        "methods": ["DREAM"],
        "ipc": [10],
        "seeds": [0],
        "eval_archs": ["ConvNet-3", "ResNet-10"],
        "variants": {
            "k32s1": {"batch_real": 32, "samples_per_cluster": 1},
            "k16s2": {"batch_real": 32, "samples_per_cluster": 2},
        },
        "exclude": [{"variant": "k16s2"}],
        "separate_evaluation": True,
    }
    m = parse_matrix(raw, "t", "paper")
    distill = [c for c in m.cells if c.task == "distill"]
    evaluate = [c for c in m.cells if c.task == "evaluate"]
    assert [c.id for c in distill] == ["digits_ipc10_DREAM_k32s1_ConvNet-3_s0"]
    assert distill[0].settings["samples_per_cluster"] == 1 and distill[0].eval_archs == ()
    assert [c.id for c in evaluate] == [
        "digits_ipc10_DREAM_k32s1_ConvNet-3_s0@ConvNet-3",
        "digits_ipc10_DREAM_k32s1_ConvNet-3_s0@ResNet-10",
    ]
    assert all(c.source == distill[0].id for c in evaluate)
    assert m.cells.index(evaluate[0]) > m.cells.index(distill[0])
    with pytest.raises(MatrixError, match="every cell"):
        parse_matrix({**raw, "exclude": [{"method": "DREAM"}]}, "t", "paper")


def test_profile_grid_override_and_task():
    raw = {**GOOD, "task": "continual", "profiles": {"mini": {"grid": {"ipc": [2], "seeds": [0]}}}}
    m = parse_matrix(raw, "t", "mini")
    assert (
        {c.ipc for c in m.cells} == {2}
        and {c.seed for c in m.cells} == {0}
        and {c.task for c in m.cells} == {"continual"}
    )
    with pytest.raises(MatrixError, match="task = 'train'"):
        parse_matrix({**GOOD, "task": "train"}, "t", "mini")
    with pytest.raises(MatrixError, match="grid may only set"):
        parse_matrix({**GOOD, "profiles": {"mini": {"grid": {"colour": [1]}}}}, "t", "mini")
    with pytest.raises(MatrixError, match="launcher has unknown key 'gpu'"):
        parse_matrix({**GOOD, "launcher": {"gpu": 1}}, "t", "mini")


@pytest.mark.parametrize("path", sorted((ROOT / "matrices").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_matrix_dry_runs_at_every_profile(path, tmp_path, capsys):
    from bench.cli.run import build_parser, main

    profiles = list((yaml.safe_load(path.read_text()).get("profiles") or {"default": None}))
    expected = {"quickstart": set(), "fidelity": {"cpu", "gpu"}, "feature-epochs": {"sets"}}.get(
        path.stem, {"mini", "paper"}
    )
    assert expected <= set(profiles)
    empty = tmp_path / "no-data"
    empty.mkdir()
    for profile in profiles:
        code = main(
            [str(path), "-p", profile, "--dry-run", "--results", str(tmp_path / "r"), "--data-root", str(empty)]
        )
        out, err = capsys.readouterr()
        if code == 2:  # a dry run checks the data: absent real datasets are named, with where to put them
            assert "--data-root" in err and len(err.strip().splitlines()) == 1, err
            flags = {a for action in build_parser()._actions for a in action.option_strings}
            assert set(re.findall(r"--[a-z][a-z-]*", err)) <= flags, err  # it suggests no flag that run lacks
            continue
        assert code == 0, err
        assert "estimated hours still to do" in out and f"[{profile}]" in out and "CPU-h" in out
    assert not (tmp_path / "r").exists()  # a dry run writes nothing


def test_settings_in_sections_equal_the_flat_form_which_gets_one_note():
    nested = {
        **GOOD,
        "profiles": {
            "mini": {
                "defaults": {
                    "budget": {"iterations": 3},
                    "evaluation": {"epochs": 5, "runs": 1},
                    "engine": {"batch_real": 8},
                },
                "methods": {"DC": {"engine": {"lr_img": 0.05}, "per_ipc": {1: {"budget": {"iterations": 2}}}}},
            }
        },
    }
    flat = {
        **GOOD,
        "profiles": {
            "mini": {
                "defaults": {"iterations": 3, "eval_epochs": 5, "eval_runs": 1, "batch_real": 8},
                "methods": {"DC": {"lr_img": 0.05}, "DC/ipc1": {"iterations": 2}},
            }
        },
    }
    a, b = parse_matrix(nested, "t", "mini"), parse_matrix(flat, "t", "mini")
    assert [(c.id, c.settings) for c in a.cells] == [(c.id, c.settings) for c in b.cells]
    dc = next(c for c in a.cells if c.method == "DC" and c.ipc == 1)
    assert dc.settings["iterations"] == 2 and dc.settings["lr_img"] == 0.05 and dc.settings["eval_epochs"] == 5
    assert a.notes == []
    assert any("deprecated" in n and "budget:" in n for n in b.notes)
    assert any("per_ipc" in n for n in b.notes)


@pytest.mark.parametrize(
    "defaults, needle",
    [
        ({"evaluation": {"iterations": 3}}, "belongs under budget:"),
        ({"budget": {"iterations": 3}, "iterations": 4}, "sets 'iterations' twice"),
        ({"engine": [1]}, "engine must be a mapping"),
    ],
)
def test_a_setting_in_the_wrong_section_is_one_line(defaults, needle):
    with pytest.raises(MatrixError, match=needle):
        parse_matrix({**GOOD, "profiles": {"mini": {"defaults": defaults}}}, "t", "mini")


def test_shipped_matrices_use_sections_only():
    for path in sorted((ROOT / "matrices").glob("*.yaml")):
        for profile in yaml.safe_load(path.read_text()).get("profiles") or {}:
            assert load_matrix(path, profile).notes == [], (path.name, profile)


@pytest.mark.parametrize(
    "changes, needle",
    [
        (
            {
                "seeds": list(range(20)),
                "ipc": list(range(1, 101)),
                "methods": ["DC", "DM", "Random"] * 1,
                "archs": ["ConvNet-3"] * 1,
                "datasets": ["digits"],
            },
            None,
        ),
        ({"seeds": [2**64]}, "'seeds' has"),
        ({"ipc": [10**9]}, "'ipc' has"),
        ({"eval_archs": []}, "'eval_archs'"),
        ({"eval_archs": [3]}, "'eval_archs'"),
    ],
)
def test_grid_values_are_bounded(changes, needle):
    if needle is None:
        assert len(parse_matrix({**GOOD, **changes}, "t", "mini").cells) == 20 * 100 * 3
        with pytest.raises(MatrixError, match="expands to 6000 cells before 'exclude'; allowed: at most 100 "):
            parse_matrix({**GOOD, **changes}, "t", "mini", max_cells=100)
        return
    with pytest.raises(MatrixError, match=needle):
        parse_matrix({**GOOD, **changes}, "t", "mini")


def test_a_small_file_that_expands_to_millions_of_cells_is_one_line():
    huge = {**GOOD, "seeds": list(range(1000)), "ipc": list(range(1, 1001)), "archs": ["ConvNet-3"] * 1}
    with pytest.raises(MatrixError, match="allowed: at most 100000"):
        parse_matrix(huge, "t", "mini")


def test_a_bad_cell_cap_and_repeated_grid_values_are_one_line(monkeypatch):
    monkeypatch.setenv("DREAMBENCH_MAX_CELLS", "zz")
    with pytest.raises(MatrixError, match="DREAMBENCH_MAX_CELLS = 'zz'"):
        parse_matrix(GOOD, "t", "mini")
    monkeypatch.delenv("DREAMBENCH_MAX_CELLS")
    with pytest.raises(MatrixError, match="lists a value twice"):
        parse_matrix({**GOOD, "seeds": [0, 0]}, "t", "mini")


def test_the_cost_estimate_counts_the_accuracy_curve_evaluations():
    from bench.execution.cost import cell_cost
    from bench.experiment.plan import plan_cells

    def cost(evaluation: dict, budget: dict):
        spec = {
            **GOOD,
            "methods": ["DC"],
            "ipc": [1],
            "seeds": [0],
            "profiles": {"p": {"defaults": {"budget": {"iterations": 10, **budget}, "evaluation": evaluation}}},
        }
        (plan,) = plan_cells(parse_matrix(spec, "p").cells, None)
        return plan, cell_cost(plan, 1000, 500)

    plan, plain = cost({"epochs": 20, "runs": 1}, {})
    _, curved = cost({"epochs": 20, "runs": 1, "curve_epochs": 7}, {"eval_every": 4})
    protocol = plan.protocols["ConvNet-3"]
    points = 4  # iterations 0, 4, 8 and the last, 10
    added = points * 7 * 10 * plan.factor**2  # networks x curve epochs x set images (IPC 1, 10 classes)
    area = (16 * 16) / (28 * 28)  # the digits' images, in 28x28 equivalents
    trained = (curved.train_small - plain.train_small) + (curved.train_large - plain.train_large)
    assert trained == pytest.approx(added * area)
    assert curved.test - plain.test == pytest.approx(points * protocol.validations * 500 * area)
