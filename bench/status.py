"""``python -m bench.status``: per-cell state of a results folder (:mod:`bench.cli.status`, also ``dreambench status``)."""
import sys

from bench.cli.status import main

if __name__ == "__main__":
    sys.exit(main())
