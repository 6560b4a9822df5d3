"""``python -m bench.report results/<matrix>[/<profile>]``: rebuild a table from finished cells.

Each cell shows ``reproduced ± std (paper value, delta)``; the paper's value comes from the published
Table I (``bench/reference/table1_main.csv``) where one exists for that dataset/IPC/method. Pooled
accuracies are last-epoch accuracies of every evaluation run of every seed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from bench.results import atomic_write_text, read_results

PAPER_NAMES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "svhn": "SVHN", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
METHOD_ORDER = ["Random", "Herding", "K-Center", "Forgetting", "DC", "DSA", "DM", "IDC", "DREAM", "DREAM+"]


def paper_table1() -> pd.DataFrame:
    """Published Table I (top-1 %), indexed by method, columns 'DATASET/IPC'."""
    with resources.files("bench").joinpath("reference/table1_main.csv").open() as fh:
        return pd.read_csv(fh, index_col="method")


def paper_value(table: pd.DataFrame, dataset: str, ipc: int, method: str) -> float | None:
    column = f"{PAPER_NAMES.get(dataset, dataset)}/{ipc}"
    if method not in table.index or column not in table.columns:
        return None
    value = table.loc[method, column]
    return None if pd.isna(value) else float(value)


def results_frame(root: Path) -> pd.DataFrame:
    """One row per (cell, evaluation architecture) with its accuracies."""
    rows = []
    for r in read_results(root):
        cell = r["cell"]
        for arch, accs in r["accuracies"].items():
            rows.append({
                "dataset": cell["dataset"], "data_used": r.get("data_used", cell["dataset"]), "ipc": cell["ipc"],
                "method": cell["method"], "arch": cell["arch"], "eval_arch": arch, "seed": cell["seed"],
                "scale": r.get("scale", cell.get("profile")), "machine": r.get("machine", "?"), "accuracies": accs,
                "distill_seconds": r.get("distill_seconds", float("nan")),
            })
    return pd.DataFrame(rows)


def _method_key(name: str) -> tuple[int, str]:
    base = name.split("+")[0]
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), name)


def format_cell(accs: list[float], paper: float | None) -> str:
    mean = statistics.fmean(accs)
    std = statistics.pstdev(accs) if len(accs) > 1 else 0.0
    text = f"{mean:.1f} ± {std:.1f}"
    if paper is not None:
        text += f" ({paper:.1f}, {mean - paper:+.1f})"
    return text


@dataclass
class Report:
    frame: pd.DataFrame
    table: pd.DataFrame
    caption: str

    @property
    def markdown(self) -> str:
        return f"{self.caption}\n\n{self.table.to_markdown()}\n"

    @property
    def latex(self) -> str:
        body = self.table.to_latex(escape=True)
        comment = "\n".join(f"% {line}" for line in self.caption.splitlines())
        return f"{comment}\n{body}"


def build_report(root: Path, write: bool = True) -> Report:
    """Pivot the finished cells into the Table I layout and write table.md / table.tex in ``root``."""
    root = Path(root)
    frame = results_frame(root)
    if frame.empty:
        caption = f"No finished cells under {root}."
        return Report(frame, pd.DataFrame(), caption)
    paper = paper_table1()
    pooled = frame.groupby(["method", "eval_arch", "dataset", "data_used", "ipc"], sort=False)["accuracies"].sum()
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for (method, eval_arch, dataset, data_used, ipc), accs in pooled.items():
        label = dataset if data_used == dataset else f"{dataset} (ran on {data_used})"
        ref = paper_value(paper, dataset, ipc, method) if data_used == dataset else None
        row = method if frame["eval_arch"].nunique() == 1 else f"{method} [{eval_arch}]"
        cells.setdefault(row, {})[f"{label}/{ipc}"] = format_cell(list(accs), ref)
    table = pd.DataFrame.from_dict(cells, orient="index")
    table = table.loc[sorted(table.index, key=_method_key)]
    table = table[sorted(table.columns, key=lambda c: (c.rsplit("/", 1)[0], int(c.rsplit("/", 1)[1])))]
    table.index.name = "method"
    scales = ", ".join(sorted(frame["scale"].astype(str).unique()))
    machines = ", ".join(sorted(frame["machine"].astype(str).unique()))
    caption = (f"Top-1 test accuracy (%), last epoch, mean ± std over seeds x evaluation runs; "
               f"(paper value, reproduced - paper) where the paper has one.\n"
               f"Scale: {scales}. Data: {', '.join(sorted(frame['data_used'].unique()))}. "
               f"Machine: {machines}. Source: {root}.")
    if "mini" in scales:
        caption += "\nMini-scale runs: not comparable to the paper's full-scale numbers."
    report = Report(frame, table, caption)
    if write:
        atomic_write_text(root / "table.md", report.markdown)
        atomic_write_text(root / "table.tex", report.latex)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a results folder: results/<matrix>/<profile>")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: results folder {str(root)!r} does not exist", file=sys.stderr)
        return 2
    roots = [root] if any(root.glob("*/result.json")) else sorted({p.parent.parent for p in root.rglob("result.json")})
    for r in roots:
        report = build_report(r)
        print(report.markdown)
        print(f"wrote {r / 'table.md'} and {r / 'table.tex'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
