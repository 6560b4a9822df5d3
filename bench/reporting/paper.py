"""The paper's published numbers (``bench/reference/*.csv``, facts copied from the DREAM+ paper) and how its
tables name datasets and order methods."""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

from bench.data.info import DATASET_INFO


def paper_name(dataset: str) -> str:
    """How the paper's tables spell a dataset (the name itself for datasets the paper has no column for)."""
    return (DATASET_INFO.get(dataset).paper_name if dataset in DATASET_INFO else None) or dataset


def reference(name: str) -> pd.DataFrame:
    """A published table from bench/reference/<name>.csv (read once per process; callers get their own copy)."""
    return _read_reference(name).copy()


@functools.lru_cache(maxsize=None)
def _read_reference(name: str) -> pd.DataFrame:
    with resources.files("bench").joinpath(f"reference/{name}.csv").open() as fh:
        return pd.read_csv(fh)


def published_mean(text: object) -> float | None:
    """'67.5±0.5' -> 67.5; empty -> None."""
    if text is None or (isinstance(text, float) and pd.isna(text)) or str(text).strip() == "":
        return None
    return float(str(text).split("±")[0])


ROW_ORDER = list(reference("table1_main")["method"]) + ["Whole"]  # the paper's row order


def paper_table1() -> pd.DataFrame:
    """Published Table I (top-1 %), indexed by method, columns 'DATASET/IPC'."""
    return reference("table1_main").set_index("method")


def paper_value(table: pd.DataFrame, dataset: str, ipc: int, method: str) -> float | None:
    column = f"{paper_name(dataset)}/{ipc}"
    if method not in table.index or column not in table.columns:
        return None
    value = table.loc[method, column]
    return None if pd.isna(value) else float(value)
