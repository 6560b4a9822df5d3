"""Committed result pages: written from a run folder's records, judged, and indexed; the committed index is
exactly what the committed CSVs generate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from crafted_records import write_record

from bench.reporting.claims import build_claims
from bench.reporting.pages import PageMeta, build_index, publish, readme_with_status
from bench.reporting.tables import build_report

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "results"


def test_the_committed_index_regenerates_byte_identically_from_the_committed_csvs() -> None:
    assert (PAGES / "index.md").read_text() == build_index(PAGES)
    assert (PAGES / "claims.md").read_text() == build_claims(PAGES)
    readme = (ROOT / "README.md").read_text()
    assert readme == readme_with_status(readme, PAGES)  # the README's status summary is the generated one


def test_every_committed_page_has_its_data(tmp_path: Path) -> None:
    for page in sorted(p for p in PAGES.iterdir() if p.is_dir()):
        frame = pd.read_csv(page / "results.csv")
        assert not frame.empty and {"verdict", "n_sets", "commit", "machine", "scale"} <= set(frame.columns)
        assert (page / "README.md").is_file() and (page / "page.json").is_file()


def test_a_published_page_is_judged_and_indexed(tmp_path: Path) -> None:
    root = tmp_path / "results" / "fidelity" / "sets"
    for seed, value in enumerate([63.0, 64.0, 65.0, 66.0]):
        write_record(root, {"dataset": "mnist", "ipc": 1, "method": "Random", "seed": seed}, {"ConvNet-3": [value]})
    write_record(
        root, {"dataset": "mnist", "ipc": 10, "method": "DC", "settings": {"iterations": 5}}, {"ConvNet-3": [80.0]}
    )
    build_report(root)
    frame = pd.read_csv(root / "results.csv")
    random = frame[(frame["method"] == "Random") & (frame["accuracy_kind"] == "last")]
    assert set(random["n_sets"]) == {4} and set(random["verdict"]) == {"reproduced"}
    pages = tmp_path / "pages"
    page = publish(
        root, pages / "random-mnist", PageMeta("Random on MNIST", "dreambench run x.yaml", source="fidelity/sets")
    )
    text = page.read_text()
    assert "dreambench run x.yaml" in text and "reproduced -0.4 (n=4" in text and "changed: Δ" in text
    index = build_index(pages)
    row = next(line for line in index.splitlines() if line.startswith("| Random |"))
    assert "reproduced -0.4 (n=4" in row and "(random-mnist/)" in row
    dc = next(line for line in index.splitlines() if line.startswith("| DC |"))
    assert "reduced: changed" in dc and dc.count("not run") == 14


def test_publish_never_overwrites_files_that_are_not_pages(tmp_path: Path) -> None:
    import pytest

    from bench.reporting.pages import PageError

    root = tmp_path / "results" / "m" / "mini"
    write_record(root, {"dataset": "mnist", "ipc": 1, "method": "Random"}, {"ConvNet-3": [63.0]})
    build_report(root)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("my notes")
    for target in (mine, tmp_path / "mine" / "page", Path("/")):
        with pytest.raises(PageError):
            publish(root, target, PageMeta("t", "c", source="m/mini"))
    assert (mine / "notes.md").read_text() == "my notes" and not (mine / "page").exists()
