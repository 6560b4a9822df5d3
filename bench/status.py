"""``python -m bench.status``, the same as ``dreambench status`` (:mod:`bench.cli.status`)."""

import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("status", sys.argv[1:]))
