"""The explicit contract: one registry type, methods described by their spec, and that adding a method or a
table layout takes one registration each (a toy method and a toy layout run through a real matrix)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from bench.cli.run import main as run_main
from bench.core.registry import Registry, UnknownNameError
from bench.data.info import DATASET_INFO, UnknownDatasetError, dataset_info
from bench.reporting import layouts
from methods import base
from methods.base import (
    DistilledSet,
    Method,
    MethodSpec,
    UnknownMethodError,
    method_spec,
    register_method,
)
from methods.components import create_method, expand_same_as, method_kind


def test_registry_refuses_duplicates_and_names_the_allowed_ones() -> None:
    reg: Registry[int] = Registry("colour", canonical=str.lower)
    reg.add("Red", 1)
    reg.register("Blue")(2)
    assert reg.get("RED") == 1 and "blue" in reg and reg.names() == ["red", "blue"]
    with pytest.raises(ValueError, match="already registered"):
        reg.add("red", 3)
    with pytest.raises(UnknownNameError) as err:
        reg.get("green")
    assert str(err.value) == "unknown colour 'green'; allowed: red, blue"


def test_dataset_facts_come_from_one_record() -> None:
    mnist = dataset_info("MNIST")
    assert (mnist.classes, mnist.channels, mnist.image_size, mnist.digit_like, mnist.paper_name) == (
        10,
        1,
        28,
        True,
        "MNIST",
    )
    assert "flip" not in mnist.dsa_strategy and "flip" in dataset_info("cifar-10").dsa_strategy
    assert dataset_info("cifar100").classes == 100 and dataset_info("cifar100").stats_dc is not None
    with pytest.raises(UnknownDatasetError, match="allowed: .*mnist"):
        dataset_info("imagenet-21k")
    assert set(DATASET_INFO.names()) >= {
        "digits",
        "mnist",
        "fashionmnist",
        "svhn",
        "cifar10",
        "cifar100",
        "tinyimagenet",
    }


def test_methods_state_their_kind_protocol_and_equivalence() -> None:
    assert method_spec("Herding").kind == "coreset" and method_spec("IDC").kind == "engine"
    assert method_kind("IDC+rm") == "composite" and method_kind("DM") == "engine"
    assert method_spec("DC").eval_protocol == "A-dc" and method_spec("DM").eval_protocol == "A-dm"
    assert expand_same_as("DREAM+") == ("IDC", ["rm", "init", "bm", "wu"])
    assert expand_same_as("DREAM+bm") == ("IDC", ["rm", "init", "bm"])
    coreset = create_method("Random", "digits", 1)
    assert coreset.config is None and coreset.factor == 1 and coreset.inner_loops(base.Budget()) == 0
    idc = create_method("IDC", "mnist", 10)
    assert idc.factor == 2 and idc.inner_loops(base.Budget(iterations=3, steps_per_network=4)) == 12
    with pytest.raises(UnknownMethodError, match="needs a matching base"):
        create_method("Random+rm", "digits", 1)
    with pytest.raises(ValueError, match="already registered"):
        register_method(method_spec("DC"))


class FirstImages(Method):
    """Toy method: the first ``ipc`` training images of every class."""

    name = "First"
    eval_protocol = "A-noaug"

    def distill(self, data, ipc, make_net, budget, seed, **hooks) -> DistilledSet:
        idx = torch.cat([data.class_indices(c)[:ipc] for c in range(data.num_classes)])
        return DistilledSet(data.train_images[idx].clone(), data.train_labels[idx].clone())


def _toy_layout(frame: pd.DataFrame, results: list[dict]) -> pd.DataFrame:
    table = frame.assign(runs=frame["accuracies"].map(len)).groupby("method")[["runs"]].sum()
    table.attrs["statistic"] = "toy layout: evaluation runs per method"
    return table


def test_a_toy_method_and_layout_run_through_a_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.METHODS, "_entries", dict(base.METHODS._entries))
    monkeypatch.setattr(layouts.LAYOUTS, "_entries", dict(layouts.LAYOUTS._entries))
    register_method(MethodSpec("First", "coreset", lambda dataset, ipc, config=None: FirstImages(), "A-noaug"))
    layouts.LAYOUTS.add("toy", _toy_layout)
    matrix = {
        "name": "toymatrix",
        "layout": "toy",
        "datasets": ["digits"],
        "ipc": [1],
        "methods": ["First", "Random"],
        "archs": ["ConvNet-3"],
        "seeds": [0],
        "profiles": {"mini": {"max_per_class": 20, "defaults": {"eval_epochs": 2, "eval_runs": 1}}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(matrix))
    assert run_main([str(path), "--results", str(tmp_path / "r")]) == 0
    root = tmp_path / "r" / "toymatrix" / "mini"
    record = json.loads((root / "digits_ipc1_First_ConvNet-3_s0" / "result.json").read_text())
    assert record["protocol"]["name"] == "A-noaug" and 0.0 <= record["accuracies"]["ConvNet-3"][0] <= 100.0
    table = (root / "table.md").read_text()
    assert "toy layout" in table and "First" in table and "Random" in table


def test_an_unknown_layout_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "layout": "table99",
                "datasets": ["digits"],
                "ipc": [1],
                "methods": ["Random"],
                "archs": ["ConvNet-3"],
                "seeds": [0],
            }
        )
    )
    assert run_main([str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "table99" in err and "allowed: table1" in err and not (tmp_path / "r").exists()


def test_settings_are_typed_views_with_one_default_each() -> None:
    from bench.experiment.matrix import MatrixError, parse_matrix
    from bench.experiment.settings import ContinualSettings, EvalSettings, Launcher

    grid = {"name": "s", "datasets": ["digits"], "ipc": [1], "methods": ["DC"], "archs": ["ConvNet-3"], "seeds": [0]}
    plain = parse_matrix(grid, "s").cells[0]
    assert plain.evaluation == EvalSettings() and plain.evaluation.runs == 5
    assert plain.continual == ContinualSettings() and plain.budget() == base.Budget()
    assert parse_matrix(grid, "s").launcher == Launcher() and Launcher().checkpoint_every == 10
    tuned = parse_matrix(
        {
            **grid,
            "profiles": {
                "p": {"defaults": {"eval_runs": 2, "eval_protocol": "A-noaug", "iterations": 3, "lr_img": 0.5}}
            },
        },
        "s",
    ).cells[0]
    assert (tuned.evaluation.runs, tuned.evaluation.protocol, tuned.budget().iterations) == (2, "A-noaug", 3)
    assert tuned.engine_overrides() == {"lr_img": 0.5}
    unset = parse_matrix(
        {**grid, "profiles": {"p": {"defaults": {"eval_runs": None, "cl_protocol": None}}}}, "s"
    ).cells[0]
    assert unset.evaluation.runs == 5 and unset.continual.protocol == "idc"  # null = unset, never None
    with pytest.raises(MatrixError, match=r"eval_runs = 0; allowed: an integer >= 1"):
        parse_matrix({**grid, "profiles": {"p": {"defaults": {"eval_runs": 0}}}}, "s")
    with pytest.raises(MatrixError, match=r"launcher.checkpoint_every = -1; allowed: an integer >= 0"):
        parse_matrix({**grid, "launcher": {"checkpoint_every": -1}}, "s")
