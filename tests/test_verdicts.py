"""Verdicts that hold up: n named, small n only indicative, the combined error and the paper's ± used, changed
settings never called reproduced, and cells pooled only when nothing that moves accuracy differs.

Each case is one of the ways the old verdict (a flat 2 points, or 2 standard errors of our sets alone) misled."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest

from bench.reporting.export import judge_rows
from bench.reporting.verdicts import (
    FLOOR,
    LABELS,
    MIN_SETS,
    NEUTRAL_SETTINGS,
    POOLING_KEYS,
    RULE_TEXT,
    PaperValue,
    Verdict,
    Z,
    judge,
    pooling_key,
    standard_error,
    tolerance,
)


def test_the_rule_constants_are_the_documented_ones() -> None:
    assert (Z, FLOOR, MIN_SETS) == (2.0, 0.5, 3)
    assert NEUTRAL_SETTINGS == {"eval_runs", "eval_curve_epochs", "eval_every"}
    assert f"n >= {MIN_SETS}" in RULE_TEXT and f"{FLOOR:g} points" in RULE_TEXT and "'changed'" in RULE_TEXT


# --- the cases the old verdict got wrong ----------------------------------------------------------------


def test_one_set_within_two_points_is_only_indicative() -> None:
    verdict = judge([63.5], PaperValue(64.9))  # MNIST Random IPC 1 sets spread about 8 points
    assert verdict.label == "indicative"
    assert verdict.text == "indicative -1.4 (n=1; needs >= 3 sets)"
    assert verdict.n == 1 and verdict.delta == pytest.approx(-1.4)


def test_two_wild_sets_are_not_reproduced_however_wide_their_error() -> None:
    verdict = judge([50.0, 80.0], PaperValue(55.0))  # the old "ok≤2SE +10.0"
    assert abs(verdict.delta) <= verdict.tolerance  # within the tolerance: only the n rule stops it
    assert verdict.label == "indicative"
    assert verdict.text == "indicative +10.0 (n=2; needs >= 3 sets)"


def test_three_tight_sets_three_points_off_are_not_reproduced() -> None:
    verdict = judge([32.2, 32.4, 32.6], PaperValue(35.5))  # a Forgetting-like row, Δ -3.1
    assert verdict.label == "not reproduced"
    assert verdict.text == "not reproduced -3.1 (n=3, tol 0.5)"


def test_near_the_ceiling_a_flat_two_points_is_too_coarse() -> None:
    verdict = judge([97.2, 97.3, 97.4], PaperValue(99.2))  # |Δ| 1.9 < 2: the old "ok"
    assert verdict.label == "not reproduced" and verdict.text == "not reproduced -1.9 (n=3, tol 0.5)"


def test_a_changed_budget_is_never_reproduced() -> None:
    means = [64.85, 64.87, 64.89, 64.87]  # Δ -0.03
    verdict = judge(means, PaperValue(64.9), {"iterations": "40", "eval_epochs": "100"})
    assert judge(means, PaperValue(64.9)).label == "reproduced"  # the same numbers, unchanged
    assert verdict.label == "changed" and verdict.tolerance is None and verdict.delta < 0
    assert verdict.text == "changed: Δ +0.0 under eval_epochs=100, iterations=40 (n=4)"  # +0.0, never -0.0


def test_a_changed_single_set_is_changed_not_indicative() -> None:
    verdict = judge([52.6], PaperValue(64.9), {"iterations": "40"})
    assert verdict.label == "changed" and verdict.text == "changed: Δ -12.3 under iterations=40 (n=1)"


def test_the_papers_spread_widens_the_tolerance() -> None:
    means = [60.0, 60.2, 59.8, 60.1, 59.9]
    assert judge(means, PaperValue(62.0)).label == "not reproduced"  # paper error taken equal to ours
    widened = judge(means, PaperValue(62.0, spread=3.5, sets=5))
    assert widened.label == "reproduced" and widened.text == "reproduced -2.0 (n=5, tol 3.1)"
    se_ours = statistics.stdev(means) / math.sqrt(5)
    assert widened.tolerance == pytest.approx(2 * math.sqrt(se_ours**2 + (3.5 / math.sqrt(5)) ** 2))


def test_without_a_published_error_the_papers_is_taken_equal_to_ours() -> None:
    means = [60.0, 62.0, 64.0, 66.0]
    se = standard_error(means)
    assert se == pytest.approx(statistics.stdev(means) / 2)
    assert tolerance(means, PaperValue(64.9)) == pytest.approx(2 * math.sqrt(2) * se)
    assert tolerance(means, PaperValue(64.9, spread=3.5)) == pytest.approx(2 * math.sqrt(2) * se)  # sets unknown
    assert judge(means, PaperValue(64.9)).text == "reproduced -1.9 (n=4, tol 3.7)"


def test_identical_sets_get_the_rounding_floor() -> None:
    assert tolerance([70.0, 70.0, 70.0], PaperValue(70.3)) == FLOOR
    assert judge([70.0, 70.0, 70.0], PaperValue(70.3)).label == "reproduced"
    assert judge([70.0, 70.0, 70.0], PaperValue(70.6)).label == "not reproduced"
    above = tolerance([70.0, 70.5, 71.0], PaperValue(70.3))  # 2 * sqrt(2) * 0.289 = 0.82: not floored
    assert above == pytest.approx(2 * math.sqrt(2) * 0.5 / math.sqrt(3)) and above > FLOOR


def test_the_label_agrees_with_the_numbers_it_shows() -> None:
    inside = judge([70.54, 70.54, 70.54], PaperValue(70.0))  # Δ 0.54 shows as +0.5 against tol 0.5
    outside = judge([70.56, 70.56, 70.56], PaperValue(70.0))  # Δ 0.56 shows as +0.6
    assert inside.text == "reproduced +0.5 (n=3, tol 0.5)"
    assert outside.text == "not reproduced +0.6 (n=3, tol 0.5)"


@pytest.mark.parametrize(
    "means, paper, changed, text",
    [  # the worked examples of docs/verdicts.md
        (
            [87.0, 90.6, 88.2, 89.9, 87.6, 89.1, 88.0, 90.2, 87.5, 89.9],
            PaperValue(89.2),
            None,
            "reproduced -0.4 (n=10, tol 1.2)",
        ),
        ([60.0, 60.2, 59.8, 60.1, 59.9], PaperValue(62.0), None, "not reproduced -2.0 (n=5, tol 0.5)"),
        ([70.0, 70.0, 70.0], PaperValue(70.3), None, "reproduced -0.3 (n=3, tol 0.5)"),
        ([70.0, 70.0, 70.0], PaperValue(70.6), None, "not reproduced -0.6 (n=3, tol 0.5)"),
        ([52.1, 52.6, 53.1], PaperValue(64.9), {"iterations": "40"}, "changed: Δ -12.3 under iterations=40 (n=3)"),
    ],
)
def test_the_documented_examples(means: list[float], paper: PaperValue, changed: dict | None, text: str) -> None:
    assert judge(means, paper, changed).text == text


def test_a_row_without_a_paper_value_is_not_judged() -> None:
    assert judge([1.0, 2.0, 3.0], None) == Verdict("no paper value", 3, None, None, "no paper value (n=3)")


@pytest.mark.parametrize(
    "means, paper, changed",
    [
        ([63.5], PaperValue(64.9), None),
        ([60.0, 62.0, 64.0, 66.0], PaperValue(64.9), None),
        ([32.2, 32.4, 32.6], PaperValue(35.5), None),
        ([1.0], PaperValue(1.0), {"iterations": "1"}),
        ([1.0], None, None),
    ],
)
def test_every_label_names_n(means: list[float], paper: PaperValue | None, changed: dict | None) -> None:
    verdict = judge(means, paper, changed)
    assert verdict.label in LABELS and f"n={len(means)}" in verdict.text and verdict.n == len(means)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one set"):
        judge([], PaperValue(50.0))
    with pytest.raises(ValueError, match="finite"):
        judge([50.0, float("nan"), 51.0], PaperValue(50.0))
    with pytest.raises(ValueError, match="at least one set"):
        PaperValue(50.0, 1.0, 0)
    with pytest.raises(ValueError, match=">= 0"):
        PaperValue(50.0, -1.0, 5)


# --- pooling ---------------------------------------------------------------------------------------------

BASE = {"iterations": 1000, "feature_epochs": 30, "eval_runs": 5}


def _key(
    settings: dict = BASE,
    protocol: str = "A-dcaug",
    epochs: int | None = 1000,
    data_used: str = "mnist",
    max_per_class: int | None = None,
) -> tuple:
    return pooling_key(settings, protocol, epochs, data_used, max_per_class)


def test_pooling_keys_name_what_moves_accuracy() -> None:
    assert POOLING_KEYS == ("protocol", "epochs", "data_used", "max_per_class", "settings")
    assert len({_key(), _key()}) == 1  # hashable, and equal for equal cells


def test_eval_runs_and_curve_settings_do_not_split_a_pool() -> None:
    assert _key({**BASE, "eval_runs": 1}) == _key()
    assert _key({**BASE, "eval_every": 50, "eval_curve_epochs": 20}) == _key()
    assert _key({**BASE, "eval_epochs": None}) == _key()  # null means the default: as if left out
    assert _key({k: BASE[k] for k in reversed(list(BASE))}) == _key()  # order does not matter
    assert _key(max_per_class=float("nan")) == _key(max_per_class=None)  # pandas' null


@pytest.mark.parametrize(
    "other",
    [
        {"settings": {**BASE, "feature_epochs": 2}},  # moves Forgetting by about 6 points
        {"settings": {**BASE, "feature_seed": 0}},  # one shared feature network, not one per cell
        {"settings": {**BASE, "iterations": 40}},  # the budget
        {"settings": {**BASE, "steps_per_network": 5}},
        {"settings": {**BASE, "eval_epochs": 300}},
        {"settings": {**BASE, "lr_img": 0.1}},  # an engine setting
        {"epochs": 300},
        {"protocol": "B-idc"},
        {"data_used": "digits"},
        {"max_per_class": 50},
    ],
)
def test_anything_that_moves_accuracy_splits_a_pool(other: dict) -> None:
    assert _key(**other) != _key()


def test_the_report_pools_by_the_same_rule() -> None:
    """export.judge_rows (what results.csv and the fidelity table use) splits and joins groups as the keys do."""

    def row(set_name: str, value: float, **changes) -> dict:
        base = {
            "dataset": "mnist",
            "data_used": "mnist",
            "ipc": 1,
            "method": "Forgetting",
            "variant": "",
            "arch": "ConvNet-3",
            "eval_arch": "ConvNet-3",
            "seed": 0,
            "protocol": "A-dcaug",
            "epochs": 1000,
            "accuracy_kind": "last",
            "run": 0,
            "value": value,
            "set": set_name,
            "settings": "{}",
            "max_per_class": None,
        }
        return {**base, **changes}

    frame = pd.DataFrame(
        [
            row("a", 36.0),
            row("b", 34.0, settings='{"eval_runs": 3}'),
            row("c", 41.0, settings='{"feature_epochs": 2}'),
            row("d", 35.0, epochs=300),
        ]
    )
    judged = judge_rows(frame)
    assert judged["n_sets"].tolist() == [2, 2, 1, 1]  # eval_runs does not split a group; the rest does
    assert judged.loc[2, "verdict"] == "indicative"  # the feature network's length splits, but has no published
    assert judged.loc[0, "verdict"] == "indicative"  # value to depart from; eval_runs is neutral: not 'changed'
    iterations = judge_rows(pd.DataFrame([row("e", 30.0, settings='{"iterations": 5}')]))
    assert iterations.loc[0, "verdict"] == "changed" and "iterations=5" in iterations.loc[0, "verdict_text"]
    same = judge_rows(pd.DataFrame([row(s, v) for s, v in (("a", 35.0), ("b", 36.0), ("c", 35.5))]))
    assert set(same["n_sets"]) == {3} and set(same["verdict"]) == {"reproduced"}
