"""``python -m bench.report``: rebuild a results folder's table (:mod:`bench.cli.report`, also ``dreambench report``)."""
import sys

from bench.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
