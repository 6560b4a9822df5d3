"""``python -m bench.status``: per-cell state of a results folder (:mod:`bench.cli.status`, also ``dreambench status``)."""
import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("status", sys.argv[1:]))
