"""``dreambench report`` / ``python -m bench.report results/<matrix>[/<profile>]``: rebuild a table from finished cells."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.experiment.store import PLAN_FILE
from bench.reporting.tables import ACCURACY_KINDS, build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0].split(': ', 1)[1])
    parser.add_argument("root", help="results/<matrix>/<profile>, or with --all any folder above several")
    parser.add_argument("--all", action="store_true", help="rebuild every results folder found below root")
    parser.add_argument("--accuracy", choices=sorted(ACCURACY_KINDS), default="last",
                        help="last epoch (default, the headline), best of the validation points, or the maximum over "
                             "evaluations during distillation (both labelled)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: results folder {str(root)!r} does not exist", file=sys.stderr)
        return 2
    direct = any(root.glob("*/result.json")) or (root / PLAN_FILE).is_file()
    roots = [root] if direct and not args.all else sorted(
        {p.parent.parent for p in root.rglob("result.json") if not any(part.startswith(".") for part in p.parts[:-2])})
    if not roots:
        print(f"error: no finished cells below {str(root)!r}", file=sys.stderr)
        return 2
    for r in roots:
        report = build_report(r, accuracy=args.accuracy)
        stem = "table" if args.accuracy == "last" else f"table_{args.accuracy}"
        print(report.markdown)
        print(f"wrote {r / (stem + '.md')} and {r / (stem + '.tex')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
