"""The settings a resolved configuration never reads (methods.config.unread_fields) really change nothing: every
one of them is changed at once and the distilled set stays bit-identical, while a read setting changes it. The
matrix then leaves them out of the cells (a change never makes a finished cell stale) and refuses them in a
method's own entry; a setting that undoes a name's switch is refused."""

from functools import partial

import pytest
from conftest import assert_same

from bench.data.loaders import load_dataset
from bench.experiment.matrix import MatrixError, parse_matrix
from bench.learning.networks import create_network
from methods.base import Budget
from methods.components import create_method
from methods.config import unread_fields

SMALL = {"batch_real": 8, "net_update_samples": 32, "net_update_epochs": 1, "interval": 1}
CHANGED = {  # a value other than any preset's, for every field unread_fields may list
    "net_lr": 0.37,
    "net_momentum": 0.77,
    "net_weight_decay": 0.003,
    "net_aug": "color_crop",
    "net_aug_mode": "composite",
    "cutmix_p": 0.9,
    "net_batch": 3,
    "net_update_epochs": 3,
    "net_update_samples": 17,
    "match_aug_mode": "composite",
    "samples_per_cluster": 2,
    "interval": 3,
    "cluster_normalized": True,
}


def distil(name: str, overrides: dict, steps: int):
    data = load_dataset("digits", max_per_class=12)
    make = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=8)
    return create_method(name, "digits", 1, overrides).distill(
        data, 1, make, Budget(iterations=2, steps_per_network=steps), seed=3
    )


@pytest.mark.parametrize(
    "name,steps", [("DC", 1), ("DC", 2), ("DSA", 2), ("DM", 1), ("IDC", 2), ("DREAM+", 2), ("DM+rm", 1)]
)
def test_every_unread_setting_changes_nothing_and_a_read_one_does(name, steps):
    config = create_method(name, "digits", 1, SMALL).config.with_budget(Budget(steps_per_network=steps))
    unread = unread_fields(config)
    assert unread and set(unread) <= set(CHANGED)
    reference = distil(name, SMALL, steps)
    changed = {**SMALL, **{k: v for k, v in CHANGED.items() if k in unread and getattr(config, k) != v}}
    assert_same(distil(name, changed, steps).images, reference.images)
    assert not distil(name, {**SMALL, "lr_img": config.lr_img * 3}, steps).images.equal(reference.images)


MATRIX = {"name": "u", "datasets": ["digits"], "ipc": [1], "archs": ["ConvNet-3"], "seeds": [0]}


def test_an_unread_shared_setting_is_left_out_of_the_cells_that_never_read_it():
    matrix = parse_matrix(
        {
            **MATRIX,
            "methods": ["DM", "DSA"],
            "ipc": [1, 10],
            "profiles": {"p": {"defaults": {"engine": {"net_lr": 0.5}}}},
        },
        "u",
    )
    carried = {(c.method, c.ipc): "net_lr" in c.settings for c in matrix.cells}
    assert carried == {("DM", 1): False, ("DM", 10): False, ("DSA", 1): False, ("DSA", 10): True}


@pytest.mark.parametrize(
    "entry,needle",
    [
        ({"DM": {"engine": {"net_lr": 0.5}}}, "DM.engine.net_lr: DM never reads it (it trains no network"),
        ({"DC": {"engine": {"interval": 3}}}, "DC.engine.interval: DC never reads it (its real batches are random"),
    ],
)
def test_a_method_entry_it_never_reads_is_refused(entry, needle):
    with pytest.raises(MatrixError, match=r"profiles\.p\.methods\.") as info:
        parse_matrix({**MATRIX, "methods": list(entry), "profiles": {"p": {"methods": entry}}}, "u")
    assert needle in str(info.value)


def test_a_method_entry_read_at_some_ipc_is_kept_there():
    entry = {"DC": {"engine": {"net_lr": 0.02}}}  # DC trains its network between steps from IPC 10 on
    matrix = parse_matrix({**MATRIX, "methods": ["DC"], "ipc": [1, 10], "profiles": {"p": {"methods": entry}}}, "u")
    assert {c.ipc: c.settings.get("net_lr") for c in matrix.cells} == {1: None, 10: 0.02}


@pytest.mark.parametrize(
    "methods,settings,needle",
    [
        (
            ["DC", "DC+init"],
            {"DC+init": {"engine": {"init": "noise"}}},
            'engine.init = "noise" undoes +init (init cluster)',
        ),
        (
            ["DREAM"],
            {"DREAM": {"engine": {"sampler": "random"}}},
            'engine.sampler = "random" undoes +rm (sampler representative)',
        ),
    ],
)
def test_a_setting_that_undoes_the_names_switch_is_refused(methods, settings, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**MATRIX, "methods": methods, "profiles": {"p": {"methods": settings}}}, "u")
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "methods,settings,needle",
    [
        (["DC"], {"DC": {"engine": {"init": "cluster"}}}, 'engine.init = "cluster" turns on +init'),
        (["IDC"], {"IDC": {"engine": {"sampler": "representative"}}}, "the name of what runs (IDC+rm)"),
        (["IDC"], {"IDC": {"engine": {"objective": {"feature_weight": 1.0}}}}, "turns on +bm"),
        (["DM", "DM+wu"], {"DM": {"engine": {"warmup_epochs": 2}}}, "the name of what runs (DM+wu)"),
        (["DREAM"], {"DREAM": {"engine": {"sampler": "random"}}}, "the name of what runs (IDC+init)"),
    ],
)
def test_a_setting_that_turns_on_a_switch_the_name_lacks_is_refused(methods, settings, needle):
    with pytest.raises(MatrixError) as info:
        parse_matrix({**MATRIX, "methods": methods, "profiles": {"p": {"methods": settings}}}, "u")
    assert needle in str(info.value)


def test_variants_no_method_tells_apart_are_refused_and_partial_ones_noted():
    variants = {"a": {"engine": {"lr_img": 0.1}}, "b": {"engine": {"lr_img": 1.0}}}
    with pytest.raises(MatrixError, match="variants a, b give every cell the same settings"):
        parse_matrix({**MATRIX, "methods": ["Random"], "variants": variants}, "u")
    matrix = parse_matrix({**MATRIX, "methods": ["Random", "DC"], "variants": variants}, "u")
    assert any("variants a, b give Random the same settings" in n for n in matrix.notes)


def test_settings_that_break_a_methods_own_configuration_are_one_line():
    """DM's preset has no gradient term: taking away its feature term too leaves nothing to match."""
    with pytest.raises(MatrixError, match="DM on digits at IPC 1: gradient_weight and feature_weight are both 0"):
        parse_matrix(
            {
                **MATRIX,
                "methods": ["DM"],
                "profiles": {"p": {"defaults": {"engine": {"objective": {"feature_weight": 0}}}}},
            },
            "u",
        )
