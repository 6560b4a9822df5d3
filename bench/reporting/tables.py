"""Rebuild a results folder's table and figures from its finished cells (``dreambench report``).

The layout follows the matrix (``bench/layouts.py``: Table I by default, Tables II-VI, curves, continual
learning); each cell shows ``reproduced ± std (paper value, delta)`` where the paper has a value. Pooled
accuracies are last-epoch accuracies of every evaluation run of every seed. ``--all results/`` rebuilds
every results folder (:mod:`bench.cli.report`).
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.core.files import atomic_write_text
from bench.experiment.settings import view
from bench.experiment.store import SET_FILE, read_matrix_info, read_results
from bench.learning.evaluation import PROTOCOLS
from bench.learning.provenance import PROTOCOL_SUMMARY
from bench.reporting.figures import (
    mean_curves,
    plot_curves,
    plot_steps,
    plot_synthetic_grid,
)
from bench.reporting.layouts import LAYOUTS, step_means
from methods.base import Budget

ACCURACY_KINDS = {
    "last": ("accuracies", "last epoch"),
    "best": ("best_accuracies", "BEST of each run's validation points (IDC/DREAM's logged 'best'; equals the last epoch "
                                "for protocols that validate once), not the last epoch"),
    "max-during": ("max_during_distillation", "MAXIMUM over the evaluations during distillation of their best "
                                              "validation point (DREAM+'s reported kind; cells run with eval_every "
                                              "only; optimistic by construction), not the last epoch"),
}


def results_frame(results: list[dict], accuracy: str = "last") -> pd.DataFrame:
    """One row per (cell, evaluation architecture) with its accuracies of the chosen kind (last or best)."""
    field_name = ACCURACY_KINDS[accuracy][0]
    rows = []
    for r in results:
        cell = r["cell"]
        protocol, choice = protocol_label(r.get("protocol", {})), r.get("protocol_choice", "?")
        if " @ " in protocol and choice == "published":
            choice = "published protocol, other epochs"
        for arch, accs in r.get(field_name, {}).items():
            rows.append({
                "dataset": cell["dataset"], "data_used": r.get("data_used", cell["dataset"]), "ipc": cell["ipc"],
                "method": cell["method"], "arch": cell["arch"], "eval_arch": arch, "seed": cell["seed"],
                "variant": cell.get("variant", ""), "settings": cell.get("settings", {}),
                "scale": r.get("scale", cell.get("profile")), "machine": r.get("machine", "?"), "accuracies": accs,
                "distill_seconds": r.get("distill_seconds", float("nan")),
                "protocol": protocol, "protocol_choice": choice,
                "max_per_class": cell.get("max_per_class"), "set": r.get("provenance", {}).get("set_sha256") or cell.get("id"),
            })
    return pd.DataFrame(rows)


@dataclass
class Report:
    frame: pd.DataFrame
    table: pd.DataFrame
    caption: str
    figures: list[Path] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        figures = "".join(f"\n![{p.stem}]({p.name})" for p in self.figures)
        return f"{self.caption}\n\n{self.table.to_markdown()}\n{figures}\n"

    @property
    def latex(self) -> str:
        body = self.table.to_latex(escape=True, index_names=False)
        comment = "\n".join(f"% {line}" for line in self.caption.splitlines())
        return f"{comment}\n{body}"


def protocol_label(protocol: dict) -> str:
    """The protocol's name, with its epochs when a matrix shortened or lengthened it (``eval_epochs``). Records
    say where their epochs came from; for older ones, epochs other than the protocol's count as the matrix's."""
    name, epochs = protocol.get("name", "?"), protocol.get("epochs")
    by_matrix = (protocol["epochs_from"] == "matrix" if "epochs_from" in protocol else
                 name in PROTOCOLS and epochs is not None and epochs != PROTOCOLS.get(name).epochs)
    return f"{name} @ {epochs} epochs" if by_matrix else name


def protocol_lines(frame: pd.DataFrame) -> str:
    """Which evaluation each row used, and whether it is the row's published one or forced by the matrix."""
    used = frame.groupby("method", sort=False)[["protocol", "protocol_choice"]].agg(lambda v: "/".join(sorted(set(v))))
    rows = "; ".join(f"{m}: {p} ({c})" for m, (p, c) in used.iterrows())
    names = sorted({n.split(" @ ")[0] for p in used["protocol"] for n in p.split("/")})
    legend = "; ".join(f"{n} = {PROTOCOL_SUMMARY[n]}" for n in names if n in PROTOCOL_SUMMARY)
    shortened = any(" @ " in p for p in used["protocol"])
    return f"Evaluation per row: {rows}.\nProtocols: {legend}. 'published' = the protocol of the paper the row's " \
           f"number comes from (docs/provenance.md); 'forced' = one protocol set by the matrix for every row." + \
           (" 'X @ N epochs' = protocol X with its epochs changed to N by the matrix (eval_epochs): not the published "
            "evaluation." if shortened else "")


FEATURE_NETWORK_LAYOUTS = {"table1", "fidelity"}   # layouts whose coreset rows pick once from a whole-set feature network


def feature_network_line(frame: pd.DataFrame) -> str:
    """Which feature network the rows that select with one (Herding, K-Center, Forgetting) used: the published
    rows never stated theirs (docs/provenance.md), so the caption names ours. Empty when no row needs one."""
    used: dict[str, set[str]] = {}
    for method, dataset, ipc, settings in zip(frame["method"], frame["data_used"], frame["ipc"], frame["settings"]):
        rule = _feature_network_rule(method, dataset, int(ipc))
        chosen = rule(view(Budget, settings), 0) if rule is not None else None
        if chosen is None:   # selects without a feature network (Random, distillation methods)
            continue
        _, epochs = chosen
        seed = settings.get("feature_seed")
        length = "untrained (0 epochs)" if epochs == 0 else f"{epochs} epoch{'' if epochs == 1 else 's'}"
        used.setdefault(method, set()).add(f"{length}, " + ("the cell's seed" if seed is None else f"seed {seed}"))
    if not used:
        return ""
    rows = "; ".join(f"{m}: {' / '.join(sorted(v))}" for m, v in used.items())
    return (f"Feature networks (the cell's architecture trained on the whole training set, then used to pick): {rows}; "
            "the published rows' recipe is unknown.")


@functools.lru_cache(maxsize=None)
def _feature_network_rule(method: str, dataset: str, ipc: int) -> Callable[[Budget, int], Any] | None:
    """The method's (budget, seed) -> (seed, epochs) | None rule for its feature network; None for methods without one."""
    from methods.components import create_method

    try:
        chosen = create_method(method, dataset, ipc, {})
    except (KeyError, ValueError):   # a method or dataset this version no longer knows
        return None
    return getattr(chosen, "feature_network_settings", None)


def layout_of(root: Path, results: list[dict]) -> str:
    """The layout ``bench.cli.run`` recorded for the folder; for folders made before that, the matrix's name
    when it names a layout, else Table I's."""
    recorded = read_matrix_info(root).get("layout")
    if recorded in LAYOUTS:
        return recorded
    matrix = str(results[0]["cell"].get("matrix", ""))
    return matrix if matrix in LAYOUTS else "table1"


def build_report(root: Path, write: bool = True, accuracy: str = "last") -> Report:
    """Rebuild the matrix's table (in the layout its matrix names, Table I by default) and its figures.

    ``accuracy='best'`` builds the table from best-of-validation accuracies instead, labelled as such and
    written to ``table_best.md``; the last-epoch table stays the headline.
    """
    root = Path(root)
    results = read_results(root, warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    frame = results_frame(results, accuracy)
    if frame.empty:
        return Report(frame, pd.DataFrame(), f"No finished cells under {root}.")
    layout = layout_of(root, results)
    table = LAYOUTS.get(layout)(frame, results)
    table.index.name = "method"
    scales = ", ".join(sorted(frame["scale"].astype(str).unique()))
    machines = ", ".join(sorted(frame["machine"].astype(str).unique()))
    statistic = table.attrs.get("statistic", "mean ± std over seeds x evaluation runs; "
                                             "(paper value, reproduced - paper) where the paper has one")
    caption = (f"Top-1 test accuracy (%), {ACCURACY_KINDS[accuracy][1]}; {statistic}.\n"
               f"Scale: {scales}. Data: {', '.join(sorted(frame['data_used'].unique()))}. "
               f"Machine: {machines}. Source: {root}.")
    if "mini" in scales:
        caption += "\nMini-scale runs: not comparable to the paper's full-scale numbers."
    if table.attrs.get("note"):
        caption += "\n" + table.attrs["note"]
    caption += "\n" + protocol_lines(frame)
    features = feature_network_line(frame) if layout in FEATURE_NETWORK_LAYOUTS else ""
    caption += f"\n{features}" if features else ""
    figures = write_figures(root, results, caption.splitlines()[1]) if write and accuracy == "last" else []
    report = Report(frame, table, caption, figures)
    if write:
        stem = "table" if accuracy == "last" else f"table_{accuracy}"
        atomic_write_text(root / f"{stem}.md", report.markdown)
        atomic_write_text(root / f"{stem}.tex", report.latex)
    return report


def write_figures(root: Path, results: list[dict], label: str) -> list[Path]:
    """Accuracy curves (when cells logged any) and a synthetic-image grid per method (first seed)."""
    figures = []
    curves = mean_curves(results)
    if curves:
        figures.append(plot_curves(curves, root / "curves.png", label))
    steps = step_means(results)
    if steps:
        figures.append(plot_steps(steps, root / "continual.png", label))
    seen = set()
    for r in sorted(results, key=lambda r: r["cell"]["seed"]):
        c = r["cell"]
        key = (c["dataset"], c["ipc"], c["method"])
        set_file = root / str(c.get("id", "")) / SET_FILE
        if key in seen or "id" not in c or not set_file.is_file() or c["ipc"] > 10:
            continue
        seen.add(key)
        name = safe_name(f"grid_{c['dataset']}_ipc{c['ipc']}_{c['method']}.png")
        figures.append(plot_synthetic_grid(set_file, root / name, f"{c['method']} {c['dataset']} IPC {c['ipc']} ({label})"))
    return figures


def safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text.replace("+", "plus"))
