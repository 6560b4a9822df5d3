"""``python -m bench.evaluate``: evaluate a set made elsewhere (:mod:`bench.cli.evaluate`, also ``dreambench evaluate``)."""
import sys

from bench.cli.main import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("evaluate", sys.argv[1:]))
