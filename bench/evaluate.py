"""``python -m bench.evaluate``: evaluate a set made elsewhere (:mod:`bench.cli.evaluate`, also ``dreambench evaluate``)."""
import sys

from bench.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
