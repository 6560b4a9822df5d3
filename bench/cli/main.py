"""``dreambench``: the harness's one command. Each subcommand is also ``python -m bench.<name>``.

dreambench run matrices/quickstart.yaml        distil, evaluate and tabulate a matrix (resumes)
dreambench validate matrices/table1.yaml       check a matrix and its data, do no work
dreambench status results/quickstart/mini      per-cell state of a results folder
dreambench report results/quickstart/mini      rebuild its tables (markdown, LaTeX, CSV) and figures
dreambench evaluate set.pt --dataset mnist     evaluate a set made elsewhere
dreambench ls [methods|datasets|...]           what the harness knows
"""

from __future__ import annotations

import importlib
import sys

from bench.cli.signals import end_on_sigterm, stopped
from bench.core.registry import suggestion

SUBCOMMANDS = {
    "run": ("bench.cli.run", "distil, evaluate and tabulate a matrix (resumes where it stopped)"),
    "validate": ("bench.cli.validate", "check a matrix, its settings and its data; do no work"),
    "status": ("bench.cli.status", "per-cell state of a results folder"),
    "report": ("bench.cli.report", "rebuild a results folder's tables and figures"),
    "evaluate": ("bench.cli.evaluate", "evaluate a set made elsewhere with a published protocol"),
    "ls": ("bench.cli.inventory", "list methods, datasets, architectures, protocols, layouts, matrices, executors"),
}


def usage() -> str:
    lines = ["usage: dreambench <command> [options]   (dreambench <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(
            f"error: unknown command {name!r}{suggestion(name, list(SUBCOMMANDS))}; allowed: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    return run_subcommand(name, rest)


def run_subcommand(name: str, argv: list[str] | None = None) -> int:
    """Run one subcommand; Ctrl-C ends it with one line and exit code 130, SIGTERM with 143 (``run`` says how far
    it got)."""
    end_on_sigterm()
    try:  # the import (torch's, seconds long) is inside: a Ctrl-C while it loads is one line too
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return int(module.main(argv) or 0)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated)
        word, code = stopped(err)
        print(f"\n{word}: dreambench {name} stopped; nothing it was writing was left half-written", file=sys.stderr)
        return code
    except OSError as err:  # the file system refused (a folder where a file belongs, a name too long, a full disk)
        from bench.core.files import describe_os_error

        print(f"error: {describe_os_error(err)}; nothing was left half-written", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
