"""``dreambench evaluate`` / ``python -m bench.evaluate data.pt --dataset cifar10 --arch ConvNet-3``: evaluate a
set produced elsewhere (dreambench's, IDC/DREAM's ``data.pt`` or DC/DSA/DM's result file) with a protocol.

Every check (the file, the dataset, the protocol, the set's shape, labels and size, the architectures) runs before
any training; a failed one prints one ``error:`` line and exits 2. The same evaluation from Python:
``bench.learning.evaluation.evaluate_images``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Callable

from bench.cli.parser import OneLineParser
from bench.data.loaders import list_datasets, load_dataset
from bench.learning.evaluation import (
    MAX_SET_BYTES,
    MAX_SET_IMAGES,
    PER_DATASET,
    PROTOCOLS,
    SUMMARIES,
    check_set,
    check_set_size,
    evaluate_images,
    load_external_set,
    network_factory,
    resolve_protocol,
)
from bench.learning.networks import UnknownNetworkError, list_networks, probe_network
from methods.representation import decode, usable_factors


def _at_least(minimum: int, maximum: int = 2**31 - 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r:.40} is not an integer; allowed: integers in [{minimum}, {maximum}]"
            ) from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; allowed: integers in [{minimum}, {maximum}]")
        return value

    parse.__name__ = "integer"
    return parse


def _protocol_help() -> str:
    rules = [f"{name}: {summary}" for name, summary in SUMMARIES.items() if name in PROTOCOLS]
    rules += [f"{name}: {rule}" for name, rule in PER_DATASET.items()]
    return "evaluation protocol (default: %(default)s); allowed: " + "; ".join(rules)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="dreambench evaluate",
        description="Evaluate a set made elsewhere (dreambench's, IDC/DREAM's data.pt or DC/DSA/DM's result file): "
        "train n fresh networks on it under a published protocol and test them on the dataset's test "
        "split.",
        epilog=f"A set holds at most {MAX_SET_IMAGES} images and {MAX_SET_BYTES // 2**30} GiB of float32 pixels (after "
        "decoding); its labels must be integer class indices. Output: one line per network, the mean +- "
        "population std of the last-epoch test accuracy (%) over n runs, with the protocol and its epochs.",
    )
    parser.add_argument(
        "path",
        help="the set file: dreambench's {'images', 'labels'[, 'factor']} dict, IDC/DREAM's "
        "[images, labels] data.pt, or DC/DSA/DM's {'data': [[images, labels], ...]} "
        "result file (read with weights_only: a file that would run code is refused)",
    )
    parser.add_argument(
        "--dataset",
        default="digits",
        help=f"dataset the set was distilled from; its test split gives the accuracy "
        f"(default: %(default)s); allowed: {', '.join(list_datasets())}",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="folder holding the dataset files (default: $DREAMBENCH_DATA, else ./data)",
    )
    parser.add_argument(
        "--arch",
        action="append",
        metavar="NET",
        help=f"evaluation network, repeatable: one result line each (default: ConvNet-3); allowed: "
        f"{', '.join(list_networks())} or timm:<model>",
    )
    parser.add_argument("--protocol", default="B", help=_protocol_help())
    parser.add_argument(
        "--epochs",
        type=_at_least(1),
        default=None,
        help="training epochs per network, replacing the protocol's (default: the protocol's)",
    )
    parser.add_argument(
        "--runs",
        type=_at_least(1, 10_000),
        default=5,
        help="n: networks trained from independent initialisations per architecture; the line "
        "reports their mean +- std (default: %(default)s)",
    )
    parser.add_argument(
        "--factor",
        type=_at_least(1, 64),
        default=None,
        help="decode factor of factorised sets (each stored image -> factor**2 images); default: the "
        "file's ('factor' key, else 1), IDC/DREAM [x, y] files: 2, use 1 for IDC-I sets",
    )
    parser.add_argument(
        "--seed",
        type=_at_least(0),
        default=0,
        help="seed of the networks' initialisation and training order (default: %(default)s)",
    )
    parser.add_argument(
        "--experiment",
        type=_at_least(0),
        default=0,
        help="which set of a DC/DSA/DM result file, 0-based (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    archs = args.arch or ["ConvNet-3"]
    if len(set(archs)) < len(archs):
        print(f"error: --arch lists a network twice ({', '.join(archs)}); allowed: distinct networks", file=sys.stderr)
        return 2
    try:
        data = load_dataset(args.dataset, args.data_root)
        protocol = resolve_protocol(args.protocol, data.name)
        images, labels, factor = load_external_set(args.path, data, args.experiment)
        factor = args.factor or factor
        if images.ndim == 4 and factor > 1:
            allowed = sorted(set(usable_factors(images.shape[2])) & set(usable_factors(images.shape[3])))
            if factor not in allowed:
                raise ValueError(
                    f"{args.path}: decode factor {factor} for {images.shape[2]} x {images.shape[3]} images leaves "
                    f"patches of padding only; allowed: {', '.join(map(str, allowed))}"
                )
            check_set_size(len(images) * factor**2, tuple(images.shape[1:]), f"{args.path} decoded (factor {factor})")
            images, labels = decode(images, factor), labels.repeat(factor**2)
        check_set(images, labels, data, args.path)
        for arch in archs:
            builder = network_factory(arch, data)
            probe_network(arch, data.channels, data.num_classes, data.image_size, **dict(builder.kwargs))
    except (ValueError, KeyError, OSError, UnknownNetworkError, RuntimeError) as err:
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {text.splitlines()[0] if text else type(err).__name__}", file=sys.stderr)
        return 2
    if args.epochs:
        protocol = replace(protocol, epochs=args.epochs)
    summary = SUMMARIES.get(protocol.name, "")
    print(
        f"{args.path}: {len(images)} images of {data.name}; protocol {protocol.name} ({protocol.epochs} epochs"
        f"{'; ' + summary if summary and not args.epochs else ''}); n = {args.runs} runs per network"
    )
    for arch in archs:
        result = evaluate_images(images, labels, data, arch, protocol, args.runs, args.seed)
        print(
            f"{arch}: {result.mean:.2f} +- {result.std:.2f} (last epoch, n = {args.runs} runs, protocol "
            f"{protocol.name}, {protocol.epochs} epochs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
