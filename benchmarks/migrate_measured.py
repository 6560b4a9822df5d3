"""Turn the raw lines of earlier diagnostic runs (benchmarks/measured/*.jsonl) into result pages, so their
figures are generated from data like every other result (docs/results.md). Run once per raw file:

    python benchmarks/migrate_measured.py herding-rules
    python benchmarks/migrate_measured.py herding-trained-networks

Each line becomes one set: its accuracies are the evaluation runs, judged by the same rule as any run's. A line
that records no commit says "not recorded"; its page says which raw file it came from.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from bench.learning.evaluation import PROTOCOLS
from bench.reporting.export import COLUMNS, judge_rows, write_results
from bench.reporting.pages import PageMeta, write_page

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "benchmarks" / "measured"
PAGES = ROOT / "docs" / "results"


def _row(base: dict, accuracies: list[float]) -> list[dict]:
    return [{**base, "accuracy_kind": "last", "run": run, "value": value} for run, value in enumerate(accuracies)]


def herding_rules() -> tuple[list[dict], PageMeta]:
    """One line per (rule, dataset, IPC, feature network): the set that rule picks, evaluated 3 times."""
    rows = []
    for line in (MEASURED / "cpu-2026-11-27-herding-rules.jsonl").read_text().splitlines():
        r = json.loads(line)
        seed, epochs = map(int, re.search(r"_s(\d+)_e(\d+)_", r["feature_file"]).groups())
        variant = "" if r["rule"] == "nearest-mean" else f"rule-{r['rule']}"
        settings = {"feature_epochs": epochs}  # the feature network of seed s = the cell's seed (the default)
        base = {"dataset": r["dataset"], "data_used": r["dataset"], "ipc": r["ipc"], "method": "Herding",
                "variant": variant, "arch": "ConvNet-3", "eval_arch": "ConvNet-3", "seed": seed,
                "protocol": r["protocol"], "epochs": PROTOCOLS.get(r["protocol"]).epochs, "epochs_from": "protocol",
                "set": f"{r['feature_file']}:{r['rule']}:ipc{r['ipc']}",
                "settings": json.dumps(settings, sort_keys=True),
                "max_per_class": None, "scale": "diagnostic", "machine": r["machine"], "commit": "not recorded",
                "fingerprint": "", "cell_id": f"{r['dataset']}_ipc{r['ipc']}_Herding_{r['rule']}_s{seed}"}  # fmt: skip
        rows += _row(base, r["accuracies"])
    meta = PageMeta(
        "Herding rules on one feature network per set (raw lines of 2026-11-27, migrated)",
        "python benchmarks/herding_rules.py <feature network> --dataset <name> --data-root ../shared/data",
        "benchmarks/measured/cpu-2026-11-27-herding-rules.jsonl, one line per rule, IPC and set. "
        "'Herding' rows use the nearest-mean rule (dreambench's Herding); rule-* rows are the other "
        "rules (variants, not judged). Untrained (0-epoch) feature networks, seed = set. That the published "
        "rows used the nearest-mean rule is an inference (docs/investigations/herding.md).",
    )
    return rows, meta


def herding_trained_networks() -> tuple[list[dict], PageMeta]:
    """Cells of the fidelity matrix's Herding rows run with trained feature networks (one line per cell)."""
    rows = []
    for line in (MEASURED / "cpu-2026-11-27-herding-trained-networks.jsonl").read_text().splitlines():
        r = json.loads(line)
        dataset, ipc, _, _, seed = re.fullmatch(r"(\w+?)_ipc(\d+)_(Herding)_(ConvNet-3)_s(\d+)", r["cell"]).groups()
        base = {"dataset": dataset, "data_used": dataset, "ipc": int(ipc), "method": "Herding", "variant": "",
                "arch": "ConvNet-3", "eval_arch": "ConvNet-3", "seed": int(seed), "protocol": r["protocol"],
                "epochs": PROTOCOLS.get(r["protocol"]).epochs, "epochs_from": "protocol", "set": r["set_sha256"],
                "settings": json.dumps(r["settings"], sort_keys=True), "max_per_class": None, "scale": r["profile"],
                "machine": r["machine"], "commit": r["git_commit"] + ("+dirty" if r["git_dirty"] else ""),
                "fingerprint": "", "cell_id": r["cell"]}  # fmt: skip
        rows += _row(base, r["accuracies"])
    meta = PageMeta(
        "Herding with trained 2-epoch feature networks (raw lines of 2026-11-27, migrated)",
        "dreambench run matrices/fidelity.yaml -p sets|cpu --only '*Herding*' --data-root ../shared/data",
        "benchmarks/measured/cpu-2026-11-27-herding-trained-networks.jsonl, one line per cell; the "
        "nearest-mean rule (an inference, docs/investigations/herding.md).",
    )
    return rows, meta


SOURCES = {"herding-rules": herding_rules, "herding-trained-networks": herding_trained_networks}


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in SOURCES:
        print(f"error: unknown source {name!r}; allowed: {', '.join(SOURCES)}", file=sys.stderr)
        return 2
    rows, meta = SOURCES[name]()
    frame = judge_rows(pd.DataFrame(rows, columns=COLUMNS[: COLUMNS.index("pooled_settings")]))
    folder = PAGES / name
    folder.mkdir(parents=True, exist_ok=True)
    write_results(folder, frame)
    (folder / "page.json").write_text(json.dumps(meta.__dict__, indent=1, sort_keys=True) + "\n")
    print(f"wrote {write_page(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
