"""Where each published Table I number comes from, and therefore how dreambench evaluates that row.

Table I of the DREAM+ paper copies most baseline rows from earlier papers, each measured with its own
paper's evaluation. A fair comparison trains each reproduced set the way its published number was trained;
this module is that evidence as data (the prose, with sources, is docs/provenance.md). Methods read their
default evaluation protocol from here (:func:`published_protocol`); a matrix may still force one protocol for
every row.

A row's source can differ by dataset column: DC's paper has no CIFAR-100 column, so the CIFAR-100 numbers of
the coreset rows, DC and DSA come from later papers (:func:`row_source`). Anything not confirmed against a
source is said so in the record's ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Provenance:
    """The source of one published row (or one dataset column of it) and the evaluation that produced it."""

    source: str  # the paper whose number Table I copies
    protocol: str  # the evaluation protocol name in bench.learning.evaluation ('A-dc' resolves per dataset)
    accuracy: str  # which accuracy that source reports
    runs: str  # how many sets and networks the published mean pools, in words
    sets: int | None = None  # distinct sets behind the published mean and ± (None: the source does not say)
    note: str = ""  # what about this record is inferred or unconfirmed ("" when nothing is)


_DC_PAPER = "DC (Zhao, Mopuri, Bilen, ICLR 2021), Table 1"
_DSA_PAPER = "DSA (Zhao, Bilen, ICML 2021), Table 1"
_DM_PAPER = "DM (Zhao, Bilen, WACV 2023), Table 1"
_DC_RUNS = "5 sets x 20 networks (100 accuracies)"
_LAST = "last epoch"

TABLE1: dict[str, Provenance] = {
    "Random": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS, 5),
    "Herding": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS, 5),
    "K-Center": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS, 5),
    "Forgetting": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS, 5),
    "DC": Provenance(_DC_PAPER, "A-dc", _LAST, _DC_RUNS, 5),
    "DSA": Provenance("DSA (Zhao, Bilen, ICML 2021)", "A", _LAST, _DC_RUNS, 5),
    "DM": Provenance("DM (Zhao, Bilen, WACV 2023)", "A-dm", _LAST, "5 sets x 5-20 networks", 5),
    "IDC": Provenance(
        "IDC (Kim et al., ICML 2022)",
        "B",
        "not stated; test.py validates every epochs // 4 epochs (4 times, the last at the final epoch) "
        "and logs the mean over --repeat runs of both the best of the 4 and the last",
        "--repeat runs of one set; count not stated",
    ),
    "DREAM": Provenance(
        "DREAM (Liu et al., ICCV 2023)", "B", "best of 4 validation points, mean over runs (inferred)", "not stated"
    ),
    "DREAM+": Provenance(
        "DREAM+ (Liu et al.)",
        "B",
        "maximum over every evaluation during distillation",
        "5 runs (paper); sets vs networks not stated",
    ),
    "Whole": Provenance("the whole training set (Table II upper bound)", "B", _LAST, "-"),
}

# Distinct sets behind each row's published mean, by method (the row's own source; CIFAR-100 columns may differ:
# row_sets). Kept as a mapping for code and docs that read it directly.
SETS: dict[str, int | None] = {method: record.sets for method, record in TABLE1.items()}

# Rows of Table I that dreambench does not run; their numbers come from their own papers.
NOT_RUN = ("DD", "LD", "CAFE", "MTT", "IDM", "KIP", "RFAD", "HaBa", "FRePo")


def published_protocol(method: str) -> str:
    """The evaluation protocol of the paper that published ``method``'s Table I number (base name)."""
    if method not in TABLE1:
        raise KeyError(f"no provenance for method {method!r}; allowed: {sorted(TABLE1)}")
    return TABLE1[method].protocol


# --- per-column sources ------------------------------------------------------------------------------------
#
# DC's paper (Table 1) covers MNIST, FashionMNIST, SVHN and CIFAR-10 only. The CIFAR-100 column of the coreset
# rows, DC and DSA therefore comes from later papers by the same authors (docs/provenance.md, "The CIFAR-100 column"):
# IPC 1 and 10 from DSA's Table 1 (DC's CIFAR-100 numbers entered the authors' README with the DSA release);
# IPC 50 not from DSA's paper (its README gives no CIFAR-100 IPC-50 number), most likely from DM's Table 1,
# which is unconfirmed. The protocols below are the methods' own (unchanged): what the DSA and DM papers did
# for the coreset rows is not known.

_C100_SMALL = "DSA (Zhao, Bilen, ICML 2021), Table 1 (CIFAR-100 at IPC 1 and 10; DC's paper has no CIFAR-100 column)"
_C100_50 = "most likely DM (Zhao, Bilen, WACV 2023), Table 1 (CIFAR-100 at IPC 50; not DSA's or DC's paper)"
_CORESET_NOTE = (
    "source inferred (not read in the paper itself); how that paper evaluated the coreset rows is "
    "unconfirmed, so the protocol is DC's, as for the other columns"
)


def _override(base: Provenance, source: str, sets: int | None, note: str) -> Provenance:
    return Provenance(source, base.protocol, base.accuracy, base.runs if sets else "not confirmed", sets, note)


_OVERRIDES: dict[tuple[str, str, int | None], Provenance] = {}
for _method in ("Random", "Herding", "Forgetting"):
    for _ipc in (1, 10):
        _OVERRIDES[(_method, "cifar100", _ipc)] = _override(TABLE1[_method], _C100_SMALL, None, _CORESET_NOTE)
    _OVERRIDES[(_method, "cifar100", 50)] = _override(TABLE1[_method], _C100_50, None, _CORESET_NOTE)
for _ipc in (1, 10):
    _OVERRIDES[("DC", "cifar100", _ipc)] = _override(
        TABLE1["DC"],
        _C100_SMALL,
        5,
        "source inferred from the authors' README history and later papers' citations; protocol from DC's code "
        "(main.py: no augmentation, 300 epochs on CIFAR-100; 5 experiments x 20 networks by default)",
    )
    _OVERRIDES[("DSA", "cifar100", _ipc)] = _override(
        TABLE1["DSA"], _C100_SMALL, 5, "numbers match the authors' README (DSA section); 5 sets is main.py's default"
    )
_OVERRIDES[("DSA", "cifar100", 50)] = _override(
    TABLE1["DSA"], _C100_50, None, "DSA's README has no CIFAR-100 IPC-50 number; the DM paper as source is unconfirmed"
)
# No CIFAR-100 column of K-Center in Table I; DC has none at IPC 50.
del _method, _ipc


def _dataset_key(dataset: str) -> str:
    """'CIFAR-100', 'CIFAR100' and 'cifar100' name one dataset."""
    return dataset.lower().replace("-", "").replace("_", "")


def row_source(method: str, dataset: str, ipc: int | None = None) -> Provenance:
    """The provenance of one published number: ``method``'s row in ``dataset``'s column (at ``ipc`` where the
    source differs by IPC; without ``ipc``, a column whose IPCs share a source, else the row's own record)."""
    if method not in TABLE1:
        raise KeyError(f"no provenance for method {method!r}; allowed: {sorted(TABLE1)}")
    key = _dataset_key(dataset)
    if ipc is not None:
        return _OVERRIDES.get((method, key, ipc), TABLE1[method])
    column = {p for (m, d, _), p in _OVERRIDES.items() if m == method and d == key}
    return column.pop() if len(column) == 1 else TABLE1[method]


def row_sets(method: str, dataset: str, ipc: int | None = None) -> int | None:
    """The number of distinct sets behind a published number (None when its source does not state it or the
    method has no Table I provenance)."""
    if method not in TABLE1:
        return None
    if ipc is None and any(m == method and d == _dataset_key(dataset) for m, d, _ in _OVERRIDES):
        counts = {p.sets for (m, d, _), p in _OVERRIDES.items() if m == method and d == _dataset_key(dataset)}
        return counts.pop() if len(counts) == 1 else None
    return row_source(method, dataset, ipc).sets


# The published ± (a standard deviation; in the DC/DSA/DM papers over sets x networks pooled) per (method,
# dataset, ipc), with dataset as dreambench names it ('mnist', 'cifar100'). Filled only with values read in the
# source paper itself. Empty: none has been confirmed from a source paper yet (docs/provenance.md says what was
# searched), so verdicts treat the paper's error as equal to ours (docs/verdicts.md).
SPREADS: dict[tuple[str, str, int], float] = {}


def published_spread(method: str, dataset: str, ipc: int) -> float | None:
    """The published ± of a row where it has been checked against its source (None otherwise)."""
    return SPREADS.get((method, _dataset_key(dataset), ipc))
