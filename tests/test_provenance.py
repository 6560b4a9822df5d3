"""The provenance table's structure: every Table I row is accounted for, protocols are the published ones,
per-column sources are complete records, and published ± values are positive where given."""

from __future__ import annotations

import math

import pytest

from bench.learning.evaluation import PROTOCOLS, SUMMARIES, protocol_names
from bench.learning.provenance import (
    NOT_RUN,
    SPREADS,
    TABLE1,
    Provenance,
    published_protocol,
    published_spread,
    row_sets,
    row_source,
)
from bench.reporting.paper import paper_table1

PUBLISHED = {
    "Random": "A-dc",
    "Herding": "A-dc",
    "K-Center": "A-dc",
    "Forgetting": "A-dc",
    "DC": "A-dc",
    "DSA": "A",
    "DM": "A-dm",
    "IDC": "B",
    "DREAM": "B",
    "DREAM+": "B",
}


def test_every_table1_row_has_provenance_or_is_listed_as_not_run():
    rows = set(paper_table1().index)
    assert rows <= set(TABLE1) | set(NOT_RUN)
    assert not set(TABLE1) & set(NOT_RUN)
    for name, record in TABLE1.items():
        assert isinstance(record, Provenance)
        assert record.source and record.protocol and record.accuracy and record.runs, name


def test_published_protocols_are_unchanged():
    for method, protocol in PUBLISHED.items():
        assert published_protocol(method) == protocol
    with pytest.raises(KeyError):
        published_protocol("no-such-method")


def test_every_protocol_named_exists():
    known = set(protocol_names()) | {"A-dc"}  # 'A-dc' resolves per dataset to A-dcaug or A-noaug
    assert {r.protocol for r in TABLE1.values()} <= known
    assert set(SUMMARIES) == set(PROTOCOLS.names())  # every protocol registered with its summary


def test_sets_are_positive_where_given():
    for name, record in TABLE1.items():
        assert record.sets is None or (isinstance(record.sets, int) and record.sets >= 1), name
    assert row_sets("DC", "mnist") == 5
    assert row_sets("IDC", "cifar10") is None
    assert row_sets("IDC+rm+init", "cifar10") is None  # no Table I row of its own


def test_spreads_are_positive_finite_and_belong_to_table1_rows():
    datasets = {"mnist", "fashionmnist", "svhn", "cifar10", "cifar100"}
    for (method, dataset, ipc), spread in SPREADS.items():
        assert method in TABLE1 and dataset in datasets and ipc >= 1
        assert math.isfinite(spread) and spread > 0
        assert published_spread(method, dataset, ipc) == spread
    assert published_spread("DREAM+", "cifar10", 10) is None or published_spread("DREAM+", "cifar10", 10) > 0


def test_cifar100_columns_name_a_source_other_than_dc_paper():
    for method in ("Random", "Herding", "Forgetting", "DC", "DSA"):
        for ipc in (1, 10):
            record = row_source(method, "cifar100", ipc)
            assert "DC (Zhao, Mopuri" not in record.source
            assert record.protocol == published_protocol(method)  # the protocol stays the method's own
        assert row_source(method, "CIFAR-100", 1) == row_source(method, "cifar100", 1)
    assert "DSA" in row_source("DC", "cifar100", 10).source
    assert "DM" in row_source("DSA", "cifar100", 50).source
    assert row_source("Random", "mnist", 1) == TABLE1["Random"]
    assert row_source("Random", "cifar100") == TABLE1["Random"]  # IPC 1/10 and 50 differ: the row's record
    assert row_source("DC", "cifar100") == row_source("DC", "cifar100", 1)  # one source for the whole column
