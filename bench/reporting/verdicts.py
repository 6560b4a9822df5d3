"""Verdicts against the paper, grounded in the numbers' uncertainty (the rule, with worked examples, is
docs/verdicts.md).

- Our standard error over n distinct sets: ``SE_ours = stdev(set means) / sqrt(n)``.
- The paper's: ``SE_paper = spread / sqrt(sets)`` when its source gives a ± over a known number of sets;
  otherwise it is taken equal to ours (the paper's value is assumed to be as noisy as our estimate of it).
- Tolerance: ``max(FLOOR, Z * sqrt(SE_ours^2 + SE_paper^2))`` with ``Z = 2`` (about 95% for a difference of
  two means) and ``FLOOR = 0.5`` points (published values are rounded to one decimal).
- "reproduced" needs ``n >= MIN_SETS`` (3) and ``|delta| <= tolerance``; "not reproduced" is ``n >= 3`` and
  ``|delta| > tolerance``; fewer sets are "indicative" whatever the distance; a cell run with any setting
  changed from the published ones (budget, evaluation, data) is "changed" and never called reproduced.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

Z = 2.0
FLOOR = 0.5
MIN_SETS = 3
# Settings that do not change what a row estimates: how many networks evaluate a set, and the evaluations
# made during distillation (curves). Everything else a matrix sets (budget, evaluation epochs or protocol,
# engine fields, the feature network's training length or seed) can move accuracy and is "changed".
NEUTRAL_SETTINGS = frozenset({"eval_runs", "eval_curve_epochs", "eval_every"})
RULE_TEXT = (f"verdict: 'reproduced' = n >= {MIN_SETS} distinct sets and |Δ| within {Z:g} combined standard errors "
             f"(ours over sets, the paper's from its ± and set count, else taken equal to ours; at least "
             f"{FLOOR:g} points); 'not reproduced' = n >= {MIN_SETS} and further; 'indicative' = fewer sets; "
             "'changed' = run with settings other than the published ones (never a reproduction verdict)")


@dataclass(frozen=True)
class PaperValue:
    """A published mean, its ± (a standard deviation over the source's sets, when given) and that set count."""

    mean: float
    spread: float | None = None
    sets: int | None = None


@dataclass(frozen=True)
class Verdict:
    """One row's verdict; ``text`` is its one-line display and always names n."""

    label: str            # reproduced | not reproduced | indicative | changed | no paper value
    n: int
    delta: float | None
    tolerance: float | None
    text: str


def standard_error(values: list[float]) -> float:
    """stdev / sqrt(n) over distinct sets (0 for a single set)."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def tolerance(set_means: list[float], paper: PaperValue) -> float:
    """``max(FLOOR, Z * sqrt(SE_ours^2 + SE_paper^2))``."""
    ours = standard_error(set_means)
    theirs = paper.spread / math.sqrt(paper.sets) if paper.spread is not None and paper.sets else ours
    return max(FLOOR, Z * math.sqrt(ours ** 2 + theirs ** 2))


def judge(set_means: list[float], paper: PaperValue | None, changed: dict[str, str] | None = None) -> Verdict:
    """The verdict of one row: its per-set means against the paper's value (see the module docstring)."""
    n = len(set_means)
    if not set_means:
        raise ValueError("a verdict needs at least one set")
    mean = statistics.fmean(set_means)
    if paper is None:
        return Verdict("no paper value", n, None, None, f"no paper value (n={n})")
    delta = mean - paper.mean
    if changed:
        what = ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
        return Verdict("changed", n, delta, None, f"changed: Δ {delta:+.1f} under {what} (n={n})")
    tol = tolerance(set_means, paper)
    if n < MIN_SETS:
        return Verdict("indicative", n, delta, tol, f"indicative {delta:+.1f} (n={n}; needs >= {MIN_SETS} sets)")
    label = "reproduced" if abs(delta) <= tol else "not reproduced"
    return Verdict(label, n, delta, tol, f"{label} {delta:+.1f} (n={n}, tol {tol:.1f})")
