"""``python -m bench.run``: expand a matrix, run the missing cells, rebuild its table (:mod:`bench.cli.run`, also ``dreambench run``)."""
import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("run", sys.argv[1:]))
