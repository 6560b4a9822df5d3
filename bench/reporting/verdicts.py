"""Verdicts against the paper, grounded in the numbers' uncertainty, and the key that decides which cells pool
into one row. The rule with worked examples is docs/verdicts.md; this module is pure (standard library only).

The rule, for one row whose ``n`` distinct sets have means ``set_means``, against a published ``PaperValue``:

- Our standard error: ``SE_ours = stdev(set_means) / sqrt(n)`` (0 for one set).
- The paper's: ``SE_paper = spread / sqrt(sets)`` when its source gives a ± and the number of sets behind it;
  otherwise it is taken equal to ours (the published value is assumed to be as noisy as our estimate of it).
- ``tolerance = max(FLOOR, Z * sqrt(SE_ours^2 + SE_paper^2))`` with ``Z = 2`` (about 95% for a difference of
  two means) and ``FLOOR = 0.5`` points (published values are rounded to one decimal).
- "reproduced": ``n >= MIN_SETS`` (3) and ``|delta| <= tolerance``; "not reproduced": ``n >= 3`` and
  ``|delta| > tolerance``; fewer sets: "indicative" whatever the distance (delta shown, never called reproduced);
  a row run with any setting changed from the published ones (budget, evaluation, data): "changed", delta shown
  with what changed, never a reproduction verdict; no published value: "no paper value". ``delta`` and the
  tolerance are compared as displayed (one decimal), so a row's text never contradicts its label.

Worked example: sets ``[60, 62, 64, 66]`` against 64.9 with no published ±: mean 63.0, delta -1.9,
``SE_ours = 2.582 / 2 = 1.291``, ``SE_paper = 1.291``, tolerance ``2 * sqrt(2 * 1.291^2) = 3.65``:
``reproduced -1.9 (n=4, tol 3.7)``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

Z = 2.0  # standard errors of the difference allowed: about 95% two-sided for a normal difference
FLOOR = 0.5  # points: published values carry one decimal, so a smaller tolerance would judge their rounding
MIN_SETS = 3  # distinct sets before a row gets a reproduction verdict (one set has no spread, two barely one)
LABELS = ("reproduced", "not reproduced", "indicative", "changed", "no paper value")

# Settings that do not change what a row estimates, only how it is measured: how many fresh networks evaluate
# each set (more runs sharpen a set's mean, they do not move it), and the evaluations made during distillation
# for the learning curves (eval_every, eval_curve_epochs), which never touch the set that is finally evaluated.
# Everything else a cell sets can move accuracy and keeps cells apart (see PoolingKey).
NEUTRAL_SETTINGS = frozenset({"eval_runs", "eval_curve_epochs", "eval_every"})
# Settings whose published value is unknown: the coresets' feature network (the source papers never stated how
# long it trained, or with which seed). They move accuracy (Forgetting by ~6 points), so they keep cells apart,
# but no value of theirs departs from a published configuration, so they never make a row "changed"; captions
# name the feature network each row used.
UNPUBLISHED_SETTINGS = frozenset({"feature_epochs", "feature_seed"})

RULE_TEXT = (
    f"verdict: 'reproduced' = n >= {MIN_SETS} distinct sets and |Δ| within {Z:g} combined standard errors "
    f"(ours over sets, the paper's from its ± and set count, else taken equal to ours; at least "
    f"{FLOOR:g} points); 'not reproduced' = n >= {MIN_SETS} and further; 'indicative' = fewer sets; "
    "'changed' = run with settings other than the published ones (never a reproduction verdict)"
)


@dataclass(frozen=True)
class PaperValue:
    """A published mean, its ± (a standard deviation over the source's sets, when given) and that set count
    (when the source states it)."""

    mean: float
    spread: float | None = None
    sets: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean):
            raise ValueError(f"a published mean must be finite, got {self.mean!r}")
        if self.spread is not None and not (math.isfinite(self.spread) and self.spread >= 0):
            raise ValueError(f"a published ± must be a finite number >= 0, got {self.spread!r}")
        if self.sets is not None and self.sets < 1:
            raise ValueError(f"a published value is over at least one set, got sets={self.sets!r}")


@dataclass(frozen=True)
class Verdict:
    """One row's verdict; ``text`` is its one-line display and always names n."""

    label: str  # one of LABELS
    n: int  # distinct sets
    delta: float | None  # our mean - the paper's (None without a paper value)
    tolerance: float | None  # None when no reproduction verdict is possible (changed, no paper value)
    text: str


def standard_error(values: list[float]) -> float:
    """stdev / sqrt(n) over distinct sets (0 for a single set)."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def paper_standard_error(paper: PaperValue, ours: float) -> float:
    """``spread / sqrt(sets)`` when the source gives both; otherwise ``ours`` (the fallback: the published mean
    is taken to be as noisy as our estimate of it, since it was measured the same way over a similar n)."""
    if paper.spread is not None and paper.sets is not None:
        return paper.spread / math.sqrt(paper.sets)
    return ours


def tolerance(set_means: list[float], paper: PaperValue) -> float:
    """``max(FLOOR, Z * sqrt(SE_ours^2 + SE_paper^2))``."""
    ours = standard_error(set_means)
    theirs = paper_standard_error(paper, ours)
    return max(FLOOR, Z * math.sqrt(ours**2 + theirs**2))


def _signed(value: float) -> str:
    return f"{round(value, 1) + 0.0:+.1f}"  # + 0.0: a tiny negative shows as +0.0, not -0.0


def judge(set_means: list[float], paper: PaperValue | None, changed: dict[str, str] | None = None) -> Verdict:
    """The verdict of one row: the means of its distinct sets (one value per set; cells holding the same images
    count once) against the paper's value; ``changed`` names the settings the row ran with away from the
    published configuration (budget, evaluation, data), which rule out a reproduction verdict."""
    n = len(set_means)
    if not set_means:
        raise ValueError("a verdict needs at least one set")
    if not all(math.isfinite(v) for v in set_means):
        raise ValueError(f"set means must be finite, got {set_means!r}")
    if paper is None:
        return Verdict("no paper value", n, None, None, f"no paper value (n={n})")
    delta = statistics.fmean(set_means) - paper.mean
    if changed:
        what = ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
        return Verdict("changed", n, delta, None, f"changed: Δ {_signed(delta)} under {what} (n={n})")
    tol = tolerance(set_means, paper)
    if n < MIN_SETS:
        return Verdict("indicative", n, delta, tol, f"indicative {_signed(delta)} (n={n}; needs >= {MIN_SETS} sets)")
    label = "reproduced" if round(abs(delta), 1) <= round(tol, 1) else "not reproduced"
    return Verdict(label, n, delta, tol, f"{label} {_signed(delta)} (n={n}, tol {tol:.1f})")


# --- which cells pool into one row ---------------------------------------------------------------------


class PoolingKey(NamedTuple):
    """What must be equal for two cells of one row (same dataset, IPC, method, variant and networks) to pool.

    - ``protocol`` and ``epochs``: the evaluation protocol's name and training epochs; a network trained 300
      instead of 1000 epochs (or without the protocol's augmentation) scores differently on the same set.
    - ``data_used``: the data the cell actually ran on (a stand-in dataset estimates something else).
    - ``max_per_class``: a subsampled real pool changes what the methods can pick or match.
    - ``settings``: every setting the cell gives except NEUTRAL_SETTINGS, sorted, null ones dropped (null means
      the default). This covers the budget (``iterations``, ``steps_per_network``), the evaluation
      (``eval_epochs``, ``eval_protocol``), every engine setting (learning rates, batches, ...), and the coresets'
      feature network: ``feature_epochs`` (2 against 30 epochs moves Forgetting by about 6 points) and
      ``feature_seed`` (a fixed seed makes every cell pick with one shared network, so its sets are not
      independent draws of the per-cell-seed recipe and must not be pooled with them). ``eval_runs`` is not
      here: it changes how many networks evaluate a set, not what the set is.

    Unknown settings keep cells apart by default: pooling too little only lowers n, pooling too much mixes
    estimands. A setting given at its default value keys apart from the same setting left out (this module does
    not know the methods' defaults); callers that want those pooled drop default values first.
    """

    protocol: str
    epochs: int | None
    data_used: str
    max_per_class: int | None
    settings: tuple[tuple[str, Any], ...]


POOLING_KEYS = PoolingKey._fields  # the record fields that move accuracy ("settings": all but NEUTRAL_SETTINGS)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))  # pandas reads a null as NaN


def _optional_int(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def _hashable(value: Any) -> Any:
    """Scalars as they are (so 30 and 30.0 key alike); lists and mappings as canonical JSON."""
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def pooling_key(
    settings: Mapping[str, Any], protocol: str, epochs: int | None, data_used: str, max_per_class: int | None
) -> PoolingKey:
    """The hashable key of a cell: cells of one row pool only when their keys are equal (see PoolingKey)."""
    moving = tuple(
        sorted((k, _hashable(v)) for k, v in (settings or {}).items() if k not in NEUTRAL_SETTINGS and not _missing(v))
    )
    return PoolingKey(str(protocol), _optional_int(epochs), str(data_used), _optional_int(max_per_class), moving)
