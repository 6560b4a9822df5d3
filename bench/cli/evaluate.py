"""``dreambench evaluate`` / ``python -m bench.evaluate data.pt --dataset cifar10 --arch ConvNet-3``: evaluate a
set produced elsewhere (dreambench's, IDC/DREAM's ``data.pt`` or DC/DSA/DM's result file) with a protocol."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

from bench.core.host_memory import keeping_freed_memory
from bench.data.loaders import load_dataset
from bench.learning.evaluation import (
    check_set,
    evaluate_set,
    load_external_set,
    network_factory,
    resolve_protocol,
)
from bench.learning.networks import UnknownNetworkError
from methods.representation import decode


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; allowed: integers >= {minimum}")
        return value

    parse.__name__ = "integer"
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--arch", action="append", help="evaluation network (repeatable; default ConvNet-3)")
    parser.add_argument("--protocol", default="B")
    parser.add_argument("--epochs", type=_at_least(1), default=None)
    parser.add_argument("--runs", type=_at_least(1), default=5)
    parser.add_argument("--factor", type=_at_least(1), default=None, help="decode factor (default: the file's; IDC/DREAM [x, y] files: 2, use 1 for IDC-I sets)")
    parser.add_argument("--seed", type=_at_least(0), default=0)
    parser.add_argument("--experiment", type=_at_least(0), default=0, help="which set of a DC/DSA/DM result file (default 0)")
    args = parser.parse_args(argv)
    archs = args.arch or ["ConvNet-3"]
    try:
        if not Path(args.path).is_file():
            raise ValueError(f"{args.path}: not a file")
        data = load_dataset(args.dataset, args.data_root)
        protocol = resolve_protocol(args.protocol, data.name)
        images, labels, factor = load_external_set(args.path, data, args.experiment)
        factor = args.factor or factor
        if images.ndim == 4 and factor > 1:
            images, labels = decode(images, factor), labels.repeat(factor**2)
        check_set(images, labels, data, args.path)
        for arch in archs:
            network_factory(arch, data)()
    except (ValueError, KeyError, FileNotFoundError, UnknownNetworkError, RuntimeError) as err:
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    if args.epochs:
        protocol = replace(protocol, epochs=args.epochs)
    for arch in archs:
        with keeping_freed_memory():
            result = evaluate_set(images, labels, data, arch, protocol, args.runs, args.seed)
        print(f"{arch}: {result.mean:.2f} +- {result.std:.2f} (last epoch, {args.runs} runs, protocol {protocol.name}, {protocol.epochs} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
