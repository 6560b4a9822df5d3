"""Verdicts that hold up: n named, small n only indicative, the combined error and the paper's ± used, changed
settings never called reproduced, and cells pooled only when nothing that moves accuracy differs."""
from __future__ import annotations

import pandas as pd
import pytest

from bench.reporting.export import judge_rows
from bench.reporting.verdicts import FLOOR, PaperValue, judge, tolerance


def test_one_set_within_two_points_is_only_indicative() -> None:
    verdict = judge([63.5], PaperValue(64.9))
    assert verdict.label == "indicative" and verdict.n == 1 and "n=1" in verdict.text


def test_two_wild_sets_are_not_reproduced_however_wide_their_error() -> None:
    verdict = judge([50.0, 80.0], PaperValue(55.0))
    assert verdict.label == "indicative" and "needs >= 3 sets" in verdict.text


def test_three_tight_sets_three_points_off_are_not_reproduced() -> None:
    verdict = judge([32.2, 32.4, 32.6], PaperValue(35.5))       # a Forgetting-like row, Δ -3.1
    assert verdict.label == "not reproduced" and round(verdict.delta, 1) == -3.1 and "n=3" in verdict.text


def test_near_the_ceiling_a_flat_two_points_is_too_coarse() -> None:
    verdict = judge([97.2, 97.3, 97.4], PaperValue(99.2))
    assert verdict.label == "not reproduced"


def test_a_changed_budget_is_never_reproduced() -> None:
    verdict = judge([64.8, 64.9, 65.0, 64.9], PaperValue(64.9), {"iterations": "40"})
    assert verdict.label == "changed" and "iterations=40" in verdict.text and "n=4" in verdict.text


def test_the_papers_spread_widens_the_tolerance() -> None:
    means = [60.0, 60.2, 59.8, 60.1, 59.9]
    assert judge(means, PaperValue(62.0)).label == "not reproduced"            # paper error taken equal to ours
    assert judge(means, PaperValue(62.0, spread=3.5, sets=5)).label == "reproduced"
    assert tolerance(means, PaperValue(62.0, 3.5, 5)) == pytest.approx(2 * ((0.0707 ** 2) + (3.5 / 5 ** 0.5) ** 2) ** 0.5,
                                                                       rel=1e-2)


def test_identical_sets_get_the_rounding_floor() -> None:
    assert tolerance([70.0, 70.0, 70.0], PaperValue(70.3)) == FLOOR
    assert judge([70.0, 70.0, 70.0], PaperValue(70.3)).label == "reproduced"
    assert judge([70.0, 70.0, 70.0], PaperValue(70.6)).label == "not reproduced"


def _row(set_name: str, value: float, **changes) -> dict:
    row = {"dataset": "mnist", "data_used": "mnist", "ipc": 1, "method": "Forgetting", "variant": "", "arch": "ConvNet-3",
           "eval_arch": "ConvNet-3", "seed": 0, "protocol": "A-dcaug", "epochs": 1000, "accuracy_kind": "last", "run": 0,
           "value": value, "set": set_name, "settings": "{}", "max_per_class": None}
    return {**row, **changes}


def test_cells_pool_only_when_nothing_that_moves_accuracy_differs() -> None:
    frame = pd.DataFrame([_row("a", 36.0), _row("b", 34.0, settings='{"eval_runs": 3}'),
                          _row("c", 41.0, settings='{"feature_epochs": 2}'), _row("d", 35.0, epochs=300)])
    judged = judge_rows(frame)
    assert judged["n_sets"].tolist() == [2, 2, 1, 1]      # eval_runs does not split a group; the rest does
    assert judged.loc[2, "verdict"] == "changed" and "feature_epochs=2" in judged.loc[2, "verdict_text"]
    assert judged.loc[0, "verdict"] == "indicative"       # eval_runs is neutral: not 'changed'
    same = judge_rows(pd.DataFrame([_row(s, v) for s, v in (("a", 35.0), ("b", 36.0), ("c", 35.5))]))
    assert set(same["n_sets"]) == {3} and set(same["verdict"]) == {"reproduced"}
