"""``python -m bench.run``, the same as ``dreambench run`` (:mod:`bench.cli.run`)."""

import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("run", sys.argv[1:]))
