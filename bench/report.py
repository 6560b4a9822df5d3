"""``python -m bench.report``, the same as ``dreambench report`` (:mod:`bench.cli.report`)."""

import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("report", sys.argv[1:]))
