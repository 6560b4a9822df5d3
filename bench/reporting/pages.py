"""Measurements as committed, generated pages: a folder per measured run under ``docs/results/`` holding its
``results.csv`` (every evaluation run, judged), its figures and a page written from them, and one index of
the reproduction status of the paper's tables, cell by cell, generated from every page's CSV.

Nothing here is typed by hand: ``dreambench report <run folder> --publish docs/results/<name>`` writes a page,
``dreambench report --index docs/results`` rewrites the index, and a test regenerates the index from the
committed CSVs and compares bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.core.files import atomic_copy, atomic_write_text, read_regular_text
from bench.reporting.export import GROUP
from bench.reporting.paper import ROW_ORDER, paper_name, reference
from bench.reporting.verdicts import LABELS

PAGE_FILE = "README.md"
META_FILE = "page.json"
INDEX_FILE = "index.md"
PAPER = "paper settings, real data"


class PageError(ValueError):
    """A pages folder, page or README that cannot be used; the message is one line."""


def read_page_file(path: Path) -> str:
    """A page's text file (README, page.json), or PageError naming it."""
    try:
        return read_regular_text(path, 16 * 2**20)
    except (OSError, UnicodeDecodeError) as err:
        raise PageError(f"{path}: cannot be read ({type(err).__name__}); allowed: a UTF-8 text file") from None


def check_target(target: Path) -> None:
    """A page folder is new, empty, or an earlier page (it holds page.json); its parent holds only pages and
    the generated index, so publishing never overwrites a user's files."""
    if target.is_symlink():  # its pages folder would be another than the one checked and indexed
        raise PageError(f"--publish {target}: a link; allowed: a real folder, e.g. docs/results/<name>")
    if target.resolve() == target.resolve().parent or (target.exists() and not target.is_dir()):
        raise PageError(
            f"--publish {target}: not a folder for a page; allowed: a new folder such as docs/results/<name>"
        )
    if target.is_dir() and any(target.iterdir()) and not (target / META_FILE).is_file():
        raise PageError(
            f"--publish {target}: the folder holds files that are not a page; allowed: a new or empty "
            "folder, or an earlier page"
        )
    parent = target.resolve().parent
    existing = next(a for a in (parent, *parent.parents) if a.exists())
    if existing != parent and existing.is_dir() and _is_pages_folder(existing):
        made = next(a for a in (parent, *parent.parents) if a.parent == existing)
        raise PageError(
            f"--publish {target}: it would create {made}, which is not a page, inside the pages folder {existing}; "
            f"allowed: a page directly in it ({existing}/<name>)"
        )
    strangers = (
        [
            p.name
            for p in parent.iterdir()
            if p.resolve() != target.resolve()
            and not ((p.is_dir() and (p / META_FILE).is_file()) or p.name in (INDEX_FILE, "claims.md"))
        ]
        if parent.is_dir()
        else []
    )
    if strangers:
        raise PageError(
            f"--publish {target}: its parent {parent} holds other files ({strangers[0]!r}, ...), and "
            "its index.md would be rewritten; allowed: a folder of pages such as docs/results/"
        )
    if parent.is_dir():
        check_pages(parent, skip=target)
    for name in (INDEX_FILE, "claims.md"):  # regenerated after the page: a user's own file of that name is refused
        check_generated(parent / name)


def _is_pages_folder(folder: Path) -> bool:
    """A folder of published pages: it holds the generated index or a page."""
    return (folder / INDEX_FILE).is_file() or any((p / META_FILE).is_file() for p in folder.iterdir() if p.is_dir())


def check_pages(folder: Path, skip: Path | None = None) -> None:
    """Every page in ``folder`` has a valid page.json: the index is rebuilt from all of them, so a broken one
    stops the command before anything is written (PageError naming it)."""
    for page in sorted(p for p in folder.iterdir() if (p / META_FILE).exists() or (p / META_FILE).is_symlink()):
        if skip is not None and page.resolve() == skip.resolve():
            continue  # the page being (re)published
        load_meta(page)
        if not (page / "results.csv").is_file():
            raise PageError(
                f"{page} has a page.json but no results.csv (an interrupted publish?); allowed: publish it again, "
                "or remove the folder"
            )


@dataclass(frozen=True)
class PageMeta:
    """What a page says about its run beyond the CSV: the command that made it and a one-line description."""

    title: str
    command: str
    description: str = ""
    source: str = ""  # <matrix>/<profile> of the run shown; a page is only ever replaced by the same source's

    def __post_init__(self) -> None:
        """Each field is one line of printable text: a newline, a control character or a Unicode line separator
        could add a heading or a table row."""
        for name, limit in (("title", 200), ("command", 4000), ("description", 500), ("source", 300)):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > limit or not value.isprintable():
                shown = repr(value) if isinstance(value, str) else type(value).__name__
                raise PageError(
                    f"page {name} = {shown:.80}; allowed: one line of at most {limit} characters, "
                    "without newlines or control characters"
                )
        if not self.title.strip():
            raise PageError(f"page title = {self.title!r}; allowed: a title with words in it")


GENERATED_FILES = ("results.csv", "curves.csv", "table.md", "table.tex")


# what makes two rows the same measurement: the cell, the network that evaluated it, and how it ran
_MEASUREMENT = ("cell_id", "eval_arch")
_HOW_IT_RAN = ("settings", "max_per_class", "data_used")


def _measurements(csv: Path) -> dict[tuple[str, ...], tuple[str, ...]]:
    """A results.csv's measurements and the settings each ran under (columns an older page lacks read as '')."""
    if not csv.is_file():  # a link to a regular file is read (only): the publish replaces the link itself
        raise PageError(f"{csv}: not a regular file; allowed: the results.csv a publish wrote (or remove it)")
    try:
        frame = pd.read_csv(csv, keep_default_na=False, dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise PageError(f"{csv}: not a results table ({type(err).__name__})") from None
    columns = [frame[c] if c in frame.columns else pd.Series([""] * len(frame)) for c in (*_MEASUREMENT, *_HOW_IT_RAN)]
    rows = zip(*(c.tolist() for c in columns)) if len(frame) else iter(())
    return {tuple(r[: len(_MEASUREMENT)]): tuple(r[len(_MEASUREMENT) :]) for r in rows}


def what_replacing_loses(page: Path, root: Path) -> str:
    """Why publishing ``root`` onto ``page`` would lose or change what the page shows, or '' when the run holds
    every measurement of the page under the same settings (a republish after more cells finished, or a new
    report of the same run)."""
    before, after = _measurements(page / "results.csv"), _measurements(root / "results.csv")
    missing = [key for key in before if key not in after]
    if missing:
        shown = ", ".join(" on ".join(k) for k in missing[:2]) + (", ..." if len(missing) > 2 else "")
        return f"the run lacks {len(missing)} of the page's {len(before)} measurements ({shown})"
    changed = [key for key in before if after[key] != before[key]]
    if changed:
        return f"{len(changed)} of the page's measurements ran under other settings ({' on '.join(changed[0])}, ...)"
    return ""


def _figures_named(table: Path) -> set[str]:
    """The figures the report drew with its table (``![stem](name.png)`` lines of table.md)."""
    text = read_page_file(table) if table.is_file() else ""
    return set(re.findall(r"\]\(([^()/\\]+\.png)\)", text))


def publish(root: Path, target: Path, meta: PageMeta, replace: bool = False) -> Path:
    """Copy a run folder's judged ``results.csv``, table and figures into ``target`` and write its page. An
    earlier page is replaced only by the same source's (matrix and profile) run holding all its measurements
    under the same settings, or with ``replace``; none of its files outlive it."""
    check_target(target)
    if not meta.source:
        raise PageError(
            f"{root} does not name its matrix and profile (its .matrix.json is missing, unreadable or incomplete), "
            "so its page could never be "
            "updated; allowed: a run folder written by dreambench run (running its matrix again rewrites the file)"
        )
    if (target / META_FILE).is_file():
        earlier = load_meta(target)
        if not earlier.source or earlier.source != meta.source:
            shows = (
                f"another run ({earlier.source}, not {meta.source or 'unknown'})"
                if earlier.source
                else ("a run it does not name (its page.json has no source)")
            )
            raise PageError(
                f"--publish {target}: the page shows {shows}; allowed: a new folder, or the page of the same "
                "matrix and profile"
            )
        csv = target / "results.csv"
        loses = what_replacing_loses(target, root) if csv.exists() or csv.is_symlink() else ""
        if loses and not replace:
            raise PageError(
                f"--publish {target}: {loses}; allowed: a run holding all of them under the page's settings, a new "
                "folder, or --replace to make this run the page"
            )
    earlier = [*(target / n for n in GENERATED_FILES), *target.glob("*.png")] if target.is_dir() else []
    drawn = _figures_named(root / "table.md")  # a figure left from an earlier report (a stale cell's) stays out
    new = [root / n for n in GENERATED_FILES if (root / n).is_file()] + sorted(
        p for p in root.glob("*.png") if p.name in drawn
    )
    for path in {*earlier, *(target / p.name for p in new), target / PAGE_FILE, target / META_FILE}:
        if (path.exists() or path.is_symlink()) and not (path.is_symlink() or path.is_file()):  # checked first:
            raise PageError(f"{path}: not a regular file where the page writes one; allowed: remove it")  # no half page
    target.mkdir(parents=True, exist_ok=True)
    for path in new:  # each replaced in one rename; then the earlier page's files this one does not have go
        atomic_copy(path, target / path.name)
    for old in earlier:
        if old.name not in {p.name for p in new} and (old.is_symlink() or old.is_file()):
            old.unlink()
    atomic_write_text(target / META_FILE, json.dumps(meta.__dict__, indent=1, sort_keys=True) + "\n")
    return write_page(target)


def write_page(folder: Path) -> Path:
    """The page of one published run, generated from its ``results.csv``, ``page.json``, table and figures."""
    meta = load_meta(folder)
    frame = pd.read_csv(folder / "results.csv", keep_default_na=False, na_values=[""])
    last = frame[frame["accuracy_kind"] == "last"]
    lines = [
        f"# {meta.title}",
        "",
        "Generated by `dreambench report --publish` from this folder's `results.csv`; do not edit by hand.",
        "",
    ]
    if meta.description:
        lines += [meta.description, ""]
    lines += [
        f"- Command: `{meta.command}`",
        f"- Scale: {', '.join(sorted(set(frame['scale'].astype(str))))}",
        f"- Data: {', '.join(sorted(set(frame['data_used'].astype(str))))}",
        f"- Machine: {', '.join(sorted(set(frame['machine'].astype(str))))}",
        f"- Commit: {', '.join(sorted(set(frame['commit'].astype(str).str[:12])))}",
        f"- Evaluation runs: {len(last)} (last-epoch accuracies) over {last['set'].nunique()} distinct sets",
        "",
    ]
    lines += [
        "## Verdicts against the paper",
        "",
        verdict_table(last),
        "",
        "Rule: docs/verdicts.md. n = distinct sets; `changed` rows ran with settings other than the "
        "published ones and are never called reproduced.",
        "",
    ]
    if (folder / "table.md").is_file():
        lines += ["## Table as the report draws it", "", (folder / "table.md").read_text().strip(), ""]
    return_path = folder / PAGE_FILE
    atomic_write_text(return_path, "\n".join(lines).rstrip() + "\n")
    return return_path


def load_meta(folder: Path) -> PageMeta:
    """A page's page.json, checked (PageError otherwise)."""
    try:
        raw = json.loads(read_page_file(folder / META_FILE))
        meta = PageMeta(**raw)
    except (ValueError, TypeError) as err:
        raise PageError(f"{folder / META_FILE}: not a page description ({str(err).splitlines()[0][:80]})") from None
    if not all(isinstance(v, str) and "\n" not in v for v in (meta.title, meta.command, meta.description)):
        raise PageError(f"{folder / META_FILE}: title, command and description must be one-line strings")
    return meta


def verdict_table(last: pd.DataFrame) -> str:
    """One row per judged group: method, data, n, mean, paper, Δ, verdict."""
    rows = []
    for _, group in last.groupby(GROUP, sort=False, dropna=False):
        first = group.iloc[0]
        label = f"{first['method']}" + (
            f" [{first['variant']}]" if isinstance(first["variant"], str) and first["variant"] else ""
        )
        data = (
            first["dataset"]
            if first["data_used"] == first["dataset"]
            else f"{first['dataset']} (ran on {first['data_used']})"
        )
        rows.append(
            {
                "method": label,
                "data / IPC": f"{data}/{first['ipc']}",
                "protocol": "-" if pd.isna(first["protocol"]) else f"{first['protocol']} @ {first['epochs']:.0f}",
                "n": int(first["n_sets"]),
                "mean": f"{first['group_mean']:.1f}",
                "paper": "-" if pd.isna(first["paper"]) else f"{first['paper']:.1f}",
                "verdict": first["verdict_text"],
            }
        )
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(ROW_ORDER)}
    table = table.iloc[
        sorted(
            range(len(table)),
            key=lambda i: (order.get(table.iloc[i]["method"].split(" ")[0], len(order)), table.iloc[i]["data / IPC"]),
        )
    ]
    return table.to_markdown(index=False)


# --- the index ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """The best evidence the committed pages hold for one cell of a paper table."""

    status: str  # 'paper settings, real data' | 'reduced' | 'stand-in data' | 'not run'
    verdict: str
    n: int
    page: str


def _evidence(frame: pd.DataFrame, method: str, dataset: str, ipc: int) -> Evidence:
    """Among the judged groups of ``method`` on ``dataset`` at ``ipc``: the one at paper settings with the most
    sets, else a reduced one, else one on stand-in data; 'not run' when none."""
    rows = frame[
        (frame["method"] == method)
        & (frame["dataset"] == dataset)
        & (frame["ipc"] == ipc)
        & (frame["accuracy_kind"] == "last")
        & (frame["variant"].astype(str).isin(["", "nan"]))
    ]
    if rows.empty:
        return Evidence("not run", "", 0, "")
    best: tuple[int, int, str, str, str] | None = None
    for (page, *_), group in rows.groupby(["page", *GROUP], sort=True, dropna=False):
        first = group.iloc[0]
        if first["data_used"] != dataset:
            rank, status = 0, "stand-in data"
        elif first["verdict"] == "changed":
            rank, status = 1, "reduced"
        else:
            rank, status = 2, "paper settings, real data"
        key = (rank, int(first["n_sets"]), page, status, str(first["verdict_text"]))
        best = key if best is None or key[:2] > best[:2] else best
    assert best is not None
    return Evidence(best[3], best[4], best[1], best[2])


def _lookup(frame: pd.DataFrame, method: str, dataset: str, ipc: int) -> Evidence:
    return Evidence("not run", "", 0, "") if frame.empty else _evidence(frame, method, dataset, ipc)


def _cell_text(e: Evidence) -> str:
    if e.status == "not run":
        return "not run"
    short = {"paper settings, real data": "", "reduced": "reduced: ", "stand-in data": "stand-in data: "}[e.status]
    return f"{short}{e.verdict} ([{e.page}]({e.page}/))".replace("|", "\\|")


def load_pages(results_dir: Path) -> pd.DataFrame:
    """Every published page's rows, with the page's folder name."""
    frames = []
    for csv in sorted(results_dir.glob("*/results.csv")):
        try:
            frame = pd.read_csv(csv, keep_default_na=False, na_values=[""], dtype={"variant": str})
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise PageError(f"{csv}: not a results table ({type(err).__name__})") from None
        missing = sorted(set(GROUP) - {"pooled_settings"} - set(frame.columns))
        if missing or "pooled_settings" not in frame.columns:
            raise PageError(
                f"{csv}: not a results table (no column {(missing or ['pooled_settings'])[0]!r}); "
                "allowed: a results.csv written by dreambench report"
            )
        frame["variant"] = frame["variant"].fillna("")
        frame["page"] = csv.parent.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["page", *GROUP])


# The Table I rows the harness implements (the other rows are copied from papers it does not run).
HARNESS_METHODS = ("Random", "Herding", "K-Center", "Forgetting", "DC", "DSA", "DM", "IDC", "DREAM", "DREAM+")
PAPER_DATASETS = {
    "MNIST": "mnist",
    "FashionMNIST": "fashionmnist",
    "SVHN": "svhn",
    "CIFAR10": "cifar10",
    "CIFAR100": "cifar100",
    "TinyImageNet": "tinyimagenet",
}
OTHER_TABLES = [
    ("Table II (TinyImageNet)", "table2_tinyimagenet", "tinyimagenet", [1, 10, 50], ["DM", "DREAM+"]),
    (
        "Table III (components, CIFAR-10 IPC 10)",
        "table3_components",
        "cifar10",
        [10],
        [
            "IDC",
            "IDC+rm",
            "IDC+init",
            "IDC+bm",
            "IDC+rm+init",
            "DREAM",
            "DREAM+",
            "DC",
            "DC+rm+init+bm",
            "DSA",
            "DSA+rm+init+bm",
        ],
    ),
    ("Table IV (cross-architecture, CIFAR-10 IPC 10)", "table4_cross_arch", "cifar10", [10], ["IDC", "DREAM+"]),
    ("Table V (sub-clusters, CIFAR-10 IPC 10)", "table5_subclusters", "cifar10", [10], ["DREAM", "DREAM+"]),
    ("Table VI (time per inner loop)", "table6_time", "cifar10", [10], ["IDC", "DREAM+"]),
    ("Fig. 11 (continual learning)", "", "cifar100", [20], ["DM", "IDC", "DREAM+"]),
]


def build_index(results_dir: Path) -> str:
    """The reproduction status of Tables I-VI and Fig. 11, cell by cell, from the committed pages' CSVs."""
    frame = load_pages(results_dir)
    pages = sorted(set(frame["page"])) if not frame.empty else []
    lines = [
        "# Reproduction status",
        "",
        "Generated by `dreambench report --index <this folder>` from the `results.csv` of every page below; "
        "do not edit by hand. A cell shows its best evidence: paper settings on the real dataset first "
        "(most sets), then reduced settings, then stand-in data. Verdicts follow docs/verdicts.md and "
        "name their n (distinct sets).",
        "",
    ]
    paper = reference("table1_main").set_index("method")
    columns = [c for c in paper.columns]
    methods = [m for m in ROW_ORDER if m in paper.index and m in HARNESS_METHODS]
    counts: dict[str, int] = {}
    body = []
    for method in methods:
        cells = []
        for column in columns:
            name, ipc = column.split("/")
            e = _lookup(frame, method, PAPER_DATASETS[name], int(ipc))
            label = next((v for v in LABELS if e.verdict.startswith(v)), e.status) if e.status == PAPER else e.status
            counts[label] = counts.get(label, 0) + 1
            cells.append(_cell_text(e))
        body.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "## Table I (main table)",
        "",
        "| method | "
        + " | ".join(f"{paper_name(PAPER_DATASETS[c.split('/')[0]])}/{c.split('/')[1]}" for c in columns)
        + " |",
        "|" + "---|" * (len(columns) + 1),
        *body,
        "",
        "Cells: " + ", ".join(f"{label} {n}" for label, n in sorted(counts.items())) + ".",
        "",
    ]
    for title, _, dataset, ipcs, names in OTHER_TABLES:
        lines += [f"## {title}", ""]
        rows = [
            f"- {m}, {dataset} IPC {ipc}: {_cell_text(_lookup(frame, m, dataset, ipc))}" for m in names for ipc in ipcs
        ]
        lines += rows + [""]
    lines += ["## Pages", ""] + [f"- [{p}]({p}/): {_title(results_dir / p)}" for p in pages] + [""]
    lines += [
        "Figures typed by hand before results became pages (the earlier Table I coreset rows among them) are "
        'not counted here: docs/measurements-log.md keeps them, each marked "no record" unless a raw file '
        "under benchmarks/measured/ backs it.",
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def _title(folder: Path) -> str:
    return load_meta(folder).title if (folder / META_FILE).is_file() else folder.name


GENERATED_MARK = "Generated by `dreambench report"  # the first words of every page this module writes


def check_generated(path: Path) -> None:
    """A file about to be regenerated must be one this harness generated: a user's own file of that name is
    refused, never overwritten (PageError)."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise PageError(f"{path}: not a regular file; allowed: a file generated by dreambench report, or none")
    if path.is_file():
        try:
            head = read_regular_text(path, 1 << 20)[:2000]
        except (OSError, UnicodeDecodeError):
            head = ""
        if GENERATED_MARK not in head:
            raise PageError(
                f"{path} was not written by dreambench report and would be overwritten; move it away, or choose "
                "a folder of pages such as docs/results/"
            )


def write_index(results_dir: Path) -> Path:
    path = results_dir / INDEX_FILE
    check_generated(path)
    atomic_write_text(path, build_index(results_dir))
    return path


def summary_line(results_dir: Path) -> str:
    """One line for the README: how many Table I cells have evidence of each kind, and the claims' verdicts."""
    text = build_index(results_dir)
    counts = text.split("## Table I (main table)")[1].split("Cells: ")[1].splitlines()[0]
    return f"Table I (the {len(HARNESS_METHODS)} methods the harness runs x 15 columns): {counts.rstrip('.')}."


STATUS_START, STATUS_END = "<!-- status:", "<!-- /status -->"


def readme_with_status(readme: str, results_dir: Path) -> str:
    """The README with its status block (between the status markers) regenerated from the pages."""
    if STATUS_START not in readme or STATUS_END not in readme:
        raise PageError(
            f"the README has no status block; allowed: a file holding '{STATUS_START} ...' and '{STATUS_END}'"
        )
    start = readme.index(STATUS_START)
    head_end = readme.find("\n", start) + 1
    end = readme.find(STATUS_END, head_end) if head_end else -1
    if end < 0:
        raise PageError(
            f"the README's status block is malformed; allowed: a line starting '{STATUS_START}', then "
            f"'{STATUS_END}' after it"
        )
    return readme[:head_end] + summary_line(results_dir) + "\n" + readme[end:]
