"""Where each published Table I number comes from, and therefore how dreambench evaluates that row.

Table I of the DREAM+ paper copies most baseline rows from earlier papers, each measured with its own
paper's evaluation. A fair comparison trains each reproduced set the way its published number was trained;
this table is that evidence as data (the prose, with sources, is docs/provenance.md). Methods read their
default evaluation protocol from here; a matrix may still force one protocol for every row.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Provenance:
    """The source of one published row and the evaluation that produced it."""

    source: str      # the paper whose number Table I copies
    protocol: str    # the evaluation protocol name in bench.learning.evaluation ('A-dc' resolves per dataset)
    accuracy: str    # which accuracy that source reports
    runs: str        # how many sets and networks the published mean pools


_DC_PAPER = "DC (Zhao, Mopuri, Bilen, ICLR 2021), Table 1"
_DC_RUNS = "5 sets x 20 networks (100 accuracies)"
_LAST = "last epoch"

TABLE1: dict[str, Provenance] = {
    "Random": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS),
    "Herding": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS),
    "K-Center": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS),
    "Forgetting": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS),
    "DC": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS),
    "DSA": Provenance("DSA (Zhao, Bilen, ICML 2021)", "A", _LAST, _DC_RUNS),
    "DM": Provenance("DM (Zhao, Bilen, WACV 2023)", "A-dm", _LAST, "5 sets x 5-20 networks"),
    "IDC": Provenance("IDC (Kim et al., ICML 2022)", "B", "final epoch of test.py (its 'best' equals 'last')",
                      "--repeat runs of one set; count not stated"),
    "DREAM": Provenance("DREAM (Liu et al., ICCV 2023)", "B", "best of 4 validation points, mean over runs (inferred)",
                        "not stated"),
    "DREAM+": Provenance("DREAM+ (Liu et al.)", "B", "maximum over every evaluation during distillation",
                         "5 runs (paper); sets vs networks not stated"),
    "Whole": Provenance("the whole training set (Table II upper bound)", "B", _LAST, "-"),
}

PROTOCOL_SUMMARY = {
    "A": "DSA augmentation, 1000 epochs, batch 256, lr x0.1 at half",
    "A-dm": "as A but DSA with flip on every dataset (main_DM.py's default strategy)",
    "A-dcaug": "DC's crop/scale/rotate augmentation, 1000 epochs, batch 256, lr x0.1 at half",
    "A-noaug": "no augmentation, 300 epochs, batch 256, lr x0.1 at half",
    "B": "DSA (no cutout) + CutMix, 1000 epochs, batch 64, lr x0.2 at 2/3 and 5/6",
}


def published_protocol(method: str) -> str:
    """The evaluation protocol of the paper that published ``method``'s Table I number (base name)."""
    if method not in TABLE1:
        raise KeyError(f"no provenance for method {method!r}; allowed: {sorted(TABLE1)}")
    return TABLE1[method].protocol


# Distinct sets each source's published mean is over (from ``runs`` above; None where the source does not say).
SETS: dict[str, int | None] = {"Random": 5, "Herding": 5, "K-Center": 5, "Forgetting": 5, "DC": 5, "DSA": 5, "DM": 5,
                               "IDC": None, "DREAM": None, "DREAM+": None, "Whole": None}
# The published ± (a standard deviation over the source's sets) per (method, dataset, ipc), filled only with
# values checked against the source paper; empty: none has been checked yet, so verdicts treat the paper's
# error as equal to ours (docs/verdicts.md).
SPREADS: dict[tuple[str, str, int], float] = {}


def row_sets(method: str, dataset: str) -> int | None:
    """The number of distinct sets behind a published row (None when its source does not state it)."""
    return SETS.get(method)


def published_spread(method: str, dataset: str, ipc: int) -> float | None:
    """The published ± of a row where it has been checked against its source (None otherwise)."""
    return SPREADS.get((method, dataset, ipc))
