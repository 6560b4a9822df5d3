"""``python -m bench.evaluate``, the same as ``dreambench evaluate`` (:mod:`bench.cli.evaluate`)."""

import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("evaluate", sys.argv[1:]))
