"""``dreambench ls [methods|datasets|archs|protocols|layouts|matrices|executors]``: what the harness knows, a
line each, so nobody has to make a mistake to learn the names."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Callable

import methods  # noqa: F401  (registers the built-in methods)
from bench.cli.parser import OneLineParser
from bench.core.files import read_regular_text
from bench.core.safe_yaml import YamlError, load_yaml_text
from bench.data.info import DATASET_INFO
from bench.execution.base import EXECUTORS
from bench.learning.evaluation import PER_DATASET, PROTOCOLS, SUMMARIES
from bench.learning.networks import NETWORKS
from bench.reporting.layouts import LAYOUTS
from methods.base import METHODS
from methods.components import COMPONENTS


def _first_line(obj: object) -> str:
    return (inspect.getdoc(obj) or "").splitlines()[0] if inspect.getdoc(obj) else ""


def list_methods() -> list[tuple[str, str]]:
    rows = [(name, f"[{spec.kind}] {spec.description}") for name, spec in METHODS.items()]
    switches = ", ".join(f"+{c}" for c in COMPONENTS)
    return rows + [("<engine method>+<switch>...", f"DREAM's parts on any matching base: {switches} (e.g. DC+rm+init)")]


def list_datasets() -> list[tuple[str, str]]:
    return [
        (
            name,
            f"{info.classes} classes, {info.channels}x{info.image_size}x{info.image_size}"
            + (
                f", the paper's {info.paper_name}"
                if info.paper_name
                else ", embedded (no download)"
                if name == "digits"
                else ""
            ),
        )
        for name, info in DATASET_INFO.items()
    ]


def list_archs() -> list[tuple[str, str]]:
    return [(name, _first_line(factory)) for name, factory in NETWORKS.items()] + [
        ("timm:<model>", "any timm model, randomly initialised (e.g. timm:resnet18)")
    ]


def list_protocols() -> list[tuple[str, str]]:
    return [(name, SUMMARIES.get(name, "")) for name in PROTOCOLS.names()] + list(PER_DATASET.items())


def list_layouts() -> list[tuple[str, str]]:
    return [(name, _first_line(fn)) for name, fn in LAYOUTS.items()]


def list_executors() -> list[tuple[str, str]]:
    return [(name, _first_line(EXECUTORS.get(name))) for name in EXECUTORS.names()]


def matrices_folder() -> Path:
    """The shipped matrices: ./matrices when run from a checkout, else the one beside the package."""
    here = Path("matrices")
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "matrices"


def list_matrices() -> list[tuple[str, str]]:
    """Every matrix file with its description and profiles; a file that is not a readable matrix is listed as
    such (``dreambench validate`` says why), never skipped in silence."""
    rows = []
    for path in sorted(matrices_folder().glob("*.yaml")):
        try:
            raw = load_yaml_text(read_regular_text(path, 1 << 20), str(path))
        except (OSError, UnicodeDecodeError, YamlError):
            raw = None
        profiles = raw.get("profiles") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(profiles or {}, dict):
            rows.append((str(path), f"not a readable matrix (dreambench validate {path} says why)"))
            continue
        rows.append((str(path), " ".join(str(raw.get("description", "")).split())))
        for profile, body in (profiles or {}).items():
            text = " ".join(str(body.get("description", "") if isinstance(body, dict) else "").split())
            rows.append((f"  -p {profile}", text))
    return rows


KINDS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "methods": list_methods,
    "datasets": list_datasets,
    "archs": list_archs,
    "protocols": list_protocols,
    "layouts": list_layouts,
    "matrices": list_matrices,
    "executors": list_executors,
}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="dreambench ls", description=" ".join(__doc__.split()).split(": ", 1)[1])
    parser.add_argument("kind", nargs="?", choices=sorted(KINDS), help="what to list (default: everything)")
    args = parser.parse_args(argv)
    for kind in [args.kind] if args.kind else list(KINDS):
        rows = KINDS[kind]()
        if not args.kind:
            print(f"{kind}:")
        width = max((len(name) for name, _ in rows), default=0)
        for name, text in rows:
            print(f"{'  ' if not args.kind else ''}{name:<{width}}  {text}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
