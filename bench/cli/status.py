"""``dreambench status`` / ``python -m bench.status results/<matrix>/<profile>``: per-cell state of a results folder."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from bench.cli.parser import OneLineParser
from bench.execution.status import cell_states
from bench.experiment.store import check_own_files, is_run_folder


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="dreambench status", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("root", help="a run's folder: results/<matrix>/<profile>")
    args = parser.parse_args(argv)
    if not args.root.strip():
        print("error: results folder ''; allowed: a run folder such as results/<matrix>/<profile>", file=sys.stderr)
        return 2
    root = Path(args.root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() or root.is_symlink() else "does not exist"
        print(f"error: results folder {str(root)!r} {what}", file=sys.stderr)
        return 2
    check_own_files(root)  # a folder at .cells.json is named as such, not taken for no run folder
    if not is_run_folder(root):
        below = sorted(
            {p.parent for p in root.glob("*/*/.cells.json")} | {p.parent for p in root.glob("*/.cells.json")}
        )
        hint = f"; run folders below it: {', '.join(str(p) for p in below[:5])}" if below else ""
        print(
            f"error: {str(root)!r} is not a run folder (no .cells.json); allowed: results/<matrix>/<profile>{hint}",
            file=sys.stderr,
        )
        return 2
    states = cell_states(root)
    for cell_id, (state, detail) in states.items():
        print(f"{state:8s} {cell_id}  {detail}".rstrip())
    counts = Counter(state for state, _ in states.values())
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
