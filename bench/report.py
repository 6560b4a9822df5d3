"""``python -m bench.report``: rebuild a results folder's table (:mod:`bench.cli.report`, also ``dreambench report``)."""
import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("report", sys.argv[1:]))
