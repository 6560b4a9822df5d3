"""The claims table's verdicts: a speed-up is judged only as far as the spacing of the logged points allows, and a
run cut short is no evidence for a claim about sufficient training."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.reporting.claims import Evidence, final_order, speedup, speedup_verdict, verdict_text


@pytest.mark.parametrize(
    ("curve", "verdict", "words"),
    [
        ([(0, 50.0), (50, 70.0)], "supported", "at least 20.0x"),  # crossed before 50: at least 1000/50
        ([(0, 50.0), (50, 60.0), (100, 70.0)], "inconclusive", "10.0x to 20.0x"),  # 15x lies inside the range
        ([(0, 50.0), (100, 60.0)], "not supported", "never reached"),  # not by 100: under 1000/100 = 10x
        ([(0, 70.0)], "supported", "iteration 0"),
        ([(0, 50.0)], "inconclusive", "never reached"),  # nothing logged after the start
    ],
)
def test_a_speedup_is_judged_within_the_spacing_of_the_logged_points(curve, verdict, words):
    got, finding = speedup_verdict(1000, curve, 65.0, 15.0)
    assert got == verdict
    assert words in finding


def test_a_crossing_between_two_close_points_decides_both_ways():
    assert speedup_verdict(1000, [(0, 50.0), (40, 60.0), (60, 70.0)], 65.0, 15.0)[0] == "supported"  # >= 16.7x
    assert speedup_verdict(1000, [(0, 50.0), (80, 60.0), (90, 70.0)], 65.0, 15.0)[0] == "not supported"  # < 12.5x


PAGE_ROW = {"page": "p", "dataset": "mnist", "data_used": "mnist", "ipc": 10, "scale": "gpu-short"}


def _curves(method: str, points: list[tuple[int, float]], seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict]:
    return [
        {**PAGE_ROW, "method": method, "seed": seed, "iteration": i, "accuracy": acc + seed * 0.1}
        for seed in seeds
        for i, acc in points
    ]


def test_speedup_reads_the_mean_curves_and_names_the_base_cut():
    curves = pd.DataFrame(
        _curves("IDC", [(0, 50.0), (10, 60.0), (20, 70.0)]) + _curves("DREAM", [(0, 60.0), (2, 71.0)])
    )
    evidence = speedup("IDC", "DREAM", 6.0)(curves, pd.DataFrame())
    assert evidence is not None and evidence.n == 3 and evidence.verdict == "supported"
    assert "last logged iteration 20" in evidence.finding and evidence.scale == "gpu-short (mnist, IPC 10)"


def test_a_run_cut_short_is_no_evidence_for_sufficient_training():
    def rows(method: str, value: float, changed: str) -> list[dict]:
        return [
            {**PAGE_ROW, "method": method, "set": str(s), "value": value, "accuracy_kind": "last", "changed": changed}
            for s in range(3)
        ]

    cut = pd.DataFrame(rows("DREAM+", 90.0, "iterations=12") + rows("IDC", 91.0, "iterations=12"))
    assert final_order("DREAM+", "IDC")(pd.DataFrame(), cut) is None
    full = pd.DataFrame(rows("DREAM+", 90.0, "") + rows("IDC", 91.0, ""))
    evidence = final_order("DREAM+", "IDC")(pd.DataFrame(), full)
    assert evidence is not None and evidence.verdict == "not supported" and evidence.n == 3


def test_a_claim_judged_on_fewer_than_three_seeds_is_only_indicative():
    one = Evidence("mini (digits, IPC 1)", 1, "reached it at iteration 2", "supported", "p", 0)
    assert verdict_text(one) == "indicative (n=1 < 3): supported at mini scale"
    three = Evidence("gpu-short (mnist, IPC 10)", 3, "never reached it", "not supported", "p", 2)
    assert verdict_text(three) == "not supported at gpu-short scale"
