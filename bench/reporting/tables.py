"""Rebuild a results folder's table and figures from its finished cells (``dreambench report``).

The layout follows the matrix (``bench/reporting/layouts.py``: Table I by default, Tables II-VI, curves, continual
learning); each cell shows ``reproduced ± std (paper value, delta)`` where the paper has a value. Pooled
accuracies are last-epoch accuracies of every evaluation run of every seed. ``--all results/`` rebuilds
every results folder (:mod:`bench.cli.report`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.core.files import UnsafeFileError, atomic_write_text
from bench.data.info import DATASET_INFO
from bench.experiment.record import Record
from bench.experiment.store import MATRIX_FILE, SET_FILE, read_matrix_info, read_results, warn_on_stderr
from bench.learning.evaluation import SUMMARIES
from bench.reporting.curves import curve_bands
from bench.reporting.export import results_rows, write_curves, write_results
from bench.reporting.figures import plot_curves, plot_steps, plot_synthetic_grid
from bench.reporting.layouts import LAYOUTS, step_means
from bench.reporting.paper import paper_table1, paper_value

ACCURACY_KINDS = {
    "last": ("accuracies", "last epoch"),
    "best": (
        "best_accuracies",
        "BEST of each run's validation points (IDC/DREAM's logged 'best'; equals the last epoch "
        "for protocols that validate once), not the last epoch",
    ),
    "max-during": (
        "max_during_distillation",
        "MAXIMUM over the evaluations during distillation of their best "
        "validation point (DREAM+'s reported kind; cells run with eval_every "
        "only; optimistic by construction), not the last epoch",
    ),
}


def results_frame(records: list[Record], accuracy: str = "last") -> pd.DataFrame:
    """One row per (cell, evaluation network) with its accuracies of the chosen kind, and what ran (from the
    record's plan: protocol, epochs, method parts, feature network, configuration)."""
    rows = []
    for r in records:
        cell = r.cell
        protocol, choice = protocol_label(r.protocol or {}), r.protocol_choice or "-"
        if r.continual_protocol:
            choice = f"continual protocol {r.continual_protocol}"
        if " @ " in protocol and choice == "published":
            choice = "published protocol, other epochs"
        for arch, accs in r.accuracies_of(accuracy).items():
            rows.append(
                {
                    "dataset": cell.dataset,
                    "data_used": r.data_used,
                    "ipc": cell.ipc,
                    "method": cell.method,
                    "arch": cell.arch,
                    "eval_arch": arch,
                    "seed": cell.seed,
                    "variant": cell.variant,
                    "settings": cell.settings,
                    "settings_key": json.dumps(cell.settings, sort_keys=True),
                    "scale": r.scale,
                    "machine": r.machine,
                    "accuracies": accs,
                    "accuracy_kind": accuracy,
                    "distill_seconds": r.distill_seconds,
                    "protocol": protocol,
                    "protocol_choice": choice,
                    "protocol_name": (r.protocol or {}).get("name", "-"),
                    "protocol_epochs": (r.protocol or {}).get("epochs"),
                    "max_per_class": cell.max_per_class,
                    "set": r.set_id,
                    "cell_id": cell.id,
                    "parts": r.method_parts,
                    "feature_network": r.feature_network,
                    "config": r.config,
                    "fingerprint": r.fingerprint,
                    "commit": r.provenance.get("git_commit", "unknown"),
                    "schema_version": r.schema_version,
                }
            )
    return pd.DataFrame(rows)


@dataclass
class Report:
    """A rebuilt table: the data behind it, the display table, its caption and the figures written with it."""

    frame: pd.DataFrame
    table: pd.DataFrame
    caption: str
    figures: list[Path] = field(default_factory=list)
    label: str = "tab:dreambench"

    @property
    def markdown(self) -> str:
        figures = "".join(f"\n![{p.stem}]({p.name})" for p in dict.fromkeys(self.figures))
        return f"{self.caption}\n\n{markdown_safe(self.table).to_markdown()}\n{figures}\n"

    @property
    def latex(self) -> str:
        """A complete ``table`` environment (booktabs rules, caption, label) that ``\\input`` takes as is; needs
        ``\\usepackage{booktabs}``."""
        if self.table.empty:
            return f"% {self.caption}\n"
        body = self.table.to_latex(escape=True, index_names=False).strip()
        for symbol, command in UNICODE_MATH.items():  # pdflatex takes no unicode math in a tabular
            body = body.replace(symbol, command)
        caption = latex_escape(" ".join(self.caption.splitlines()))
        return (
            "\\begin{table}[t]\n\\centering\n\\small\n" + body + "\n"
            f"\\caption{{{caption}}}\n\\label{{{self.label}}}\n\\end{{table}}\n"
        )


def markdown_safe(table: pd.DataFrame) -> pd.DataFrame:
    """The table with '|' escaped in its index, columns and cells (a name holding one would split a column)."""
    escape = lambda v: v.replace("|", "\\|") if isinstance(v, str) else v
    out = table.rename(index=escape, columns=escape)
    return out.map(escape) if hasattr(out, "map") else out.applymap(escape)


UNICODE_MATH = {"±": r"$\pm$", "Δ": r"$\Delta$", "≤": r"$\leq$", "≥": r"$\geq$", "×": r"$\times$"}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX caption."""
    special = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        **UNICODE_MATH,
    }
    return "".join(special.get(ch, ch) for ch in text)


def protocol_label(protocol: dict) -> str:
    """The protocol's name, with its epochs when a matrix shortened or lengthened it (``eval_epochs``); records
    say where their epochs came from (schema-1 records: inferred once, by ``upgrade_record``)."""
    name, epochs = protocol.get("name", "-"), protocol.get("epochs")
    return f"{name} @ {epochs} epochs" if protocol.get("epochs_from") == "matrix" else name


def class_names(dataset: str) -> list[str] | None:
    """Class names of a dataset for figures (None: show class indices)."""
    names = DATASET_INFO.get(dataset).class_names if dataset in DATASET_INFO else ()
    return list(names) or None


def protocol_lines(frame: pd.DataFrame) -> str:
    """Which evaluation each row used, and whether it is the row's published one or forced by the matrix."""
    used = frame.groupby("method", sort=False)[["protocol", "protocol_choice"]].agg(lambda v: "/".join(sorted(set(v))))
    rows = "; ".join(f"{m}: {p} ({c})" for m, (p, c) in used.iterrows())
    names = sorted({n.split(" @ ")[0] for p in used["protocol"] for n in p.split("/")})
    legend = "; ".join(f"{n} = {SUMMARIES[n]}" for n in names if n in SUMMARIES)
    shortened = any(" @ " in p for p in used["protocol"])
    if all(c.startswith("continual protocol") for c in used["protocol_choice"]):
        return (
            f"Training per row: {rows}; 'idc' = IDC's class-incremental protocol (a head of the seen classes, "
            "distillation loss), 'dc' = DC's (a fixed head, protocol A)."
        )
    return (
        f"Evaluation per row: {rows}.\n"
        + (f"Protocols: {legend}. " if legend else "")
        + "'published' = the protocol of the paper the row's "
        "number comes from (docs/provenance.md); 'forced' = one protocol set by the matrix for every row."
        + (
            " 'X @ N epochs' = protocol X with its epochs changed to N by the matrix (eval_epochs): not the published "
            "evaluation."
            if shortened
            else ""
        )
    )


FEATURE_NETWORK_LAYOUTS = {
    "table1",
    "fidelity",
}  # layouts whose coreset rows pick once from a whole-set feature network


def feature_network_line(frame: pd.DataFrame) -> str:
    """Which feature network the rows that select with one (Herding, K-Center, Forgetting) used, as their records
    state it: the published rows never stated theirs (docs/provenance.md), so the caption names ours. Empty when
    no row used one."""
    used: dict[str, set[str]] = {}
    for method, schema, network, settings in zip(
        frame["method"], frame["schema_version"], frame["feature_network"], frame["settings"]
    ):
        if schema < 2:
            used.setdefault(method, set()).add("not recorded (a schema-1 record)")
            continue
        if not network:  # selects without a feature network (Random, distillation methods)
            continue
        epochs = network["epochs"]
        length = "untrained (0 epochs)" if epochs == 0 else f"{epochs} epoch{'' if epochs == 1 else 's'}"
        seed = "the cell's seed" if settings.get("feature_seed") is None else f"seed {network['seed']}"
        used.setdefault(method, set()).add(f"{length}, {seed}")
    if not used:
        return ""
    rows = "; ".join(f"{m}: {' / '.join(sorted(v))}" for m, v in used.items())
    return (
        f"Feature networks (the cell's architecture trained on the whole training set, then used to pick): {rows}; "
        "the published rows' recipe is unknown."
    )


def layout_of(root: Path, results: list[Record]) -> str:
    """The layout ``bench.cli.run`` recorded for the folder; for folders made before that, the matrix's name
    when it names a layout, else Table I's."""
    recorded = read_matrix_info(root).get("layout")
    if recorded in LAYOUTS:
        return recorded
    if recorded is not None:
        warn_on_stderr(f"{root / MATRIX_FILE} names layout {recorded!r}, which is not one; drawing the default")
    matrix = results[0].cell.matrix
    return matrix if matrix in LAYOUTS else "table1"


NO_PROTOCOL_LAYOUTS = {"table6"}  # timing tables: no evaluation protocol to name


def relative_source(root: Path) -> str:
    """The folder as ``<matrix>/<profile>``: captions and titles never carry the user's absolute paths."""
    return "/".join(root.resolve().parts[-2:])


def build_report(root: Path, write: bool = True, accuracy: str = "last") -> Report:
    """Rebuild the matrix's table (in the layout its matrix names, Table I by default) and its figures.

    ``accuracy='best'`` builds the table from best-of-validation accuracies instead, labelled as such and
    written to ``table_best.md``; the last-epoch table stays the headline.
    """
    root = Path(root)
    results = read_results(root, warn=warn_on_stderr)
    frame = results_frame(results, accuracy)
    if frame.empty:
        why = (
            f"No finished cells under {root}."
            if not results or accuracy == "last"
            else f"No {accuracy} accuracies among the {len(results)} finished cells under {root} "
            f"({ACCURACY_KINDS[accuracy][1]}: recorded only by some runs)."
        )
        return Report(frame, pd.DataFrame(), why)
    layout = layout_of(root, results)
    table = LAYOUTS.get(layout)(frame, results)
    table.index.name = "method"
    scales = ", ".join(sorted(frame["scale"].astype(str).unique()))
    machines = ", ".join(sorted(frame["machine"].astype(str).unique()))
    statistic = table.attrs.get(
        "statistic",
        "mean ± std over seeds x evaluation runs; (paper value, reproduced - paper) where the paper has one",
    )
    quantity = table.attrs.get("quantity", f"Top-1 test accuracy (%), {ACCURACY_KINDS[accuracy][1]}")
    source = relative_source(root)
    caption = (
        f"{quantity}; {statistic}.\n"
        f"Scale: {scales}. Data: {', '.join(sorted(frame['data_used'].unique()))}. "
        f"Machine: {machines}. Source: {source}."
    )
    if "mini" in scales:
        caption += "\nMini-scale runs: not comparable to the paper's full-scale numbers."
    if table.attrs.get("note"):
        caption += "\n" + table.attrs["note"]
    if layout not in NO_PROTOCOL_LAYOUTS:
        caption += "\n" + protocol_lines(frame)
    features = feature_network_line(frame) if layout in FEATURE_NETWORK_LAYOUTS else ""
    caption += f"\n{features}" if features else ""
    figures = (
        write_figures(root, results, f"{source} ({scales} scale, {machines})") if write and accuracy == "last" else []
    )
    report = Report(frame, table, caption, figures, label=f"tab:{safe_name(source.replace('/', '-'))}")
    if write:
        stem = "table" if accuracy == "last" else f"table_{accuracy}"
        atomic_write_text(root / f"{stem}.md", report.markdown)
        atomic_write_text(root / f"{stem}.tex", report.latex)
        write_results(root, results_rows(results))
        write_curves(root, results)
    return report


def write_figures(root: Path, results: list[Record], label: str) -> list[Path]:
    """Accuracy curves (when cells logged any; a band over seeds, the paper's value dashed), continual steps, and
    a grid of stored images per method (first seed)."""
    figures = []
    bands = curve_bands(results)
    if bands:
        paper = {
            key: value
            for key in bands
            if (value := paper_value(paper_table1(), *key)) is not None
            and all(r.data_used == r.cell.dataset for r in results if (r.cell.dataset, r.cell.ipc) == key[:2])
        }
        figures.append(plot_curves(bands, root / "curves.png", label, paper))
    steps = step_means(results)
    if steps:
        figures.append(plot_steps(steps, root / "continual.png", label))
    seen = set()
    for r in sorted(results, key=lambda r: r.cell.seed):
        c = r.cell
        key = (c.dataset, c.ipc, c.method, c.variant)
        set_file = root / c.id / SET_FILE
        if key in seen or not set_file.is_file() or c.ipc > 10:
            continue
        seen.add(key)
        name = safe_name(f"grid_{c.dataset}_ipc{c.ipc}_{c.method}{'_' + c.variant if c.variant else ''}.png")
        title = f"{c.method} on {r.data_used}, IPC {c.ipc}" + (f" [{c.variant}]" if c.variant else "")
        try:
            figures.append(plot_synthetic_grid(set_file, root / name, title, class_names=class_names(r.data_used)))
        except (UnsafeFileError, KeyError, TypeError, AttributeError, RuntimeError) as err:  # a damaged stored set
            print(
                f"warning: {name} not drawn: {err if isinstance(err, UnsafeFileError) else set_file}", file=sys.stderr
            )
    return figures


def safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text.replace("+", "plus"))
