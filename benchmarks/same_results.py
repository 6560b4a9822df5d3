"""Are two runs of one matrix the same? Compares, cell by cell, the stored set's sha256 and every accuracy
(last and best) of two results folders, e.g. the quickstart run by two commits:

    python benchmarks/same_results.py /tmp/old/quickstart/mini results/quickstart/mini
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def outcome(folder: Path) -> dict[str, tuple]:
    out = {}
    for path in sorted(folder.glob("*/result.json")):
        r = json.loads(path.read_text())
        out[r["cell"]["id"]] = (r["provenance"].get("set_sha256"), r["accuracies"], r.get("best_accuracies"))
    return out


def main() -> int:
    old, new = (outcome(Path(p)) for p in sys.argv[1:3])
    differ = sorted(cid for cid in old.keys() & new.keys() if old[cid] != new[cid])
    print(
        f"{len(old.keys() & new.keys()) - len(differ)} cells identical, {len(differ)} different, "
        f"{len(old.keys() ^ new.keys())} in one run only"
    )
    for cid in differ:
        print(f"  {cid}: {old[cid][1]} -> {new[cid][1]}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
