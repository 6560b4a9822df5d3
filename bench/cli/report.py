"""``dreambench report`` / ``python -m bench.report results/<matrix>[/<profile>]``: rebuild a table from finished cells.

Writes ``table.md``, ``table.tex`` (a complete LaTeX ``table``), ``results.csv`` / ``results.json`` (one row per
evaluation run, judged against the paper) and the figures. ``--publish docs/results/<name>`` also copies them
into a committed page; ``--index docs/results`` regenerates the reproduction-status index from every page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.parser import OneLineParser
from bench.core.files import atomic_write_text
from bench.experiment.store import MATRIX_FILE, PLAN_FILE, check_own_files, read_matrix_info
from bench.reporting.claims import CLAIMS_FILE, write_claims
from bench.reporting.pages import (
    INDEX_FILE,
    META_FILE,
    PageError,
    PageMeta,
    check_generated,
    check_pages,
    load_meta,
    publish,
    read_page_file,
    readme_with_status,
    what_replacing_loses,
    write_index,
)
from bench.reporting.tables import ACCURACY_KINDS, build_report


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="dreambench report", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("root", nargs="?", help="results/<matrix>/<profile>, or with --all any folder above several")
    parser.add_argument("--all", action="store_true", help="rebuild every results folder found below root")
    parser.add_argument(
        "--accuracy",
        choices=sorted(ACCURACY_KINDS),
        default="last",
        help="last epoch (default, the headline), best of the validation points, or the maximum over "
        "evaluations during distillation (both labelled)",
    )
    parser.add_argument(
        "--publish",
        metavar="FOLDER",
        default=None,
        help="also copy the results, table and figures into FOLDER (e.g. docs/results/<name>) and write "
        "its page; then rewrite FOLDER's parent index",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with --publish: let this run replace a page of the same matrix and profile although it lacks some of "
        "the page's measurements or ran them under other settings (the page's title and description are not kept)",
    )
    parser.add_argument(
        "--title", default=None, help="the published page's title (default: the page's own, else <matrix>/<profile>)"
    )
    parser.add_argument(
        "--description", default=None, help="one line for the published page (default: the page's own, else none)"
    )
    parser.add_argument(
        "--index",
        metavar="FOLDER",
        default=None,
        help="only regenerate FOLDER/index.md (the reproduction status) and FOLDER/claims.md (the "
        "paper's claims against the evidence) from the pages in FOLDER",
    )
    parser.add_argument(
        "--readme",
        metavar="FILE",
        default=None,
        help="with --index: also regenerate FILE's status block (between its status markers)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return report(args)
    except PageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def report(args: argparse.Namespace) -> int:
    """The command's work; a bad pages folder, page or README is a PageError (one line, exit 2)."""
    if args.publish is not None and not args.publish.strip():
        raise PageError("--publish ''; allowed: a folder for the page, e.g. docs/results/<name>")
    if args.publish and ".." in Path(args.publish).parts:  # 'pages/zz/../x' would leave 'zz' in the pages folder
        raise PageError(f"--publish {args.publish}: a path through '..'; allowed: a direct path, e.g. docs/results/x")
    if args.readme and not args.index:
        raise PageError("--readme works with --index FOLDER only (the status block comes from that folder's pages)")
    if args.index and (args.root is not None or args.publish or args.all):
        raise PageError(
            "--index FOLDER takes no results folder, --publish or --all; allowed: --index FOLDER [--readme FILE]"
        )
    for flag, given in (
        ("--replace", args.replace),
        ("--title", args.title is not None),
        ("--description", args.description is not None),
    ):
        if given and not args.publish:  # each describes the published page: alone it would do nothing
            raise PageError(f"{flag} works with --publish FOLDER only; allowed: --publish FOLDER {flag} ...")
    if args.index and args.accuracy != "last":
        raise PageError("--accuracy works on a results folder, not with --index (pages keep every accuracy kind)")
    if args.publish:  # a bad title or description is refused before anything is written
        PageMeta(args.title if args.title is not None else "-", "-", args.description or "")
    if args.index:
        folder = Path(args.index)
        if not folder.is_dir():
            print(f"error: pages folder {str(folder)!r} does not exist", file=sys.stderr)
            return 2
        if not any((p / META_FILE).is_file() for p in folder.iterdir() if p.is_dir()):
            raise PageError(f"{folder} holds no published pages (folders with {META_FILE}); allowed: a folder of pages")
        check_pages(folder)
        for name in (INDEX_FILE, CLAIMS_FILE):  # all checked before anything is written
            check_generated(folder / name)
        readme = Path(args.readme) if args.readme else None
        try:
            new_readme = readme_with_status(read_page_file(readme), folder) if readme else None
        except PageError as err:
            raise PageError(f"--readme {readme}: {err}") from None
        print(f"wrote {write_index(folder)} and {write_claims(folder)}")
        if readme and new_readme is not None:
            atomic_write_text(readme, new_readme)
            print(f"wrote the status block of {readme}")
        return 0
    if args.root is None:
        print("error: a results folder is needed (or --index FOLDER)", file=sys.stderr)
        return 2
    if not args.root.strip():
        raise PageError("results folder ''; allowed: a run folder such as results/<matrix>/<profile>")
    root = Path(args.root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() or root.is_symlink() else "does not exist"
        print(f"error: results folder {str(root)!r} {what}", file=sys.stderr)
        return 2
    check_own_files(root)  # a folder at .cells.json is named as such, not taken for no run folder
    direct = any(root.glob("*/result.json")) or (root / PLAN_FILE).is_file()
    if not direct and not args.all:
        raise PageError(
            f"{str(root)!r} is not a run folder (no {PLAN_FILE}, no finished cell); allowed: a run folder such as "
            f"results/<matrix>/<profile>, or --all to rebuild every run folder below {str(root)!r}"
        )
    roots = (
        [root]
        if direct and not args.all
        else sorted(
            {
                p.parent.parent
                for p in root.rglob("result.json")
                if not any(part.startswith(".") for part in p.parts[:-2])
            }
        )
    )
    if not roots:
        print(f"error: no finished cells below {str(root)!r}", file=sys.stderr)
        return 2
    if args.publish and len(roots) > 1:
        print("error: --publish takes one results folder, not --all", file=sys.stderr)
        return 2
    for r in roots:
        report = build_report(r, accuracy=args.accuracy)
        stem = "table" if args.accuracy == "last" else f"table_{args.accuracy}"
        print(report.markdown)
        print(f"wrote {r / (stem + '.md')}, {r / (stem + '.tex')} and {r / 'results.csv'}")
    if args.publish:
        info = read_matrix_info(roots[0])
        page = Path(args.publish)
        earlier = load_meta(page) if (page / META_FILE).is_file() else None
        if earlier and args.replace and (page / "results.csv").is_file() and what_replacing_loses(page, roots[0]):
            earlier = None  # its words described the measurements being replaced
        title = args.title if args.title is not None else earlier.title if earlier else None
        description = args.description if args.description is not None else earlier.description if earlier else ""
        command = info.get("command", "not recorded (a run made before commands were recorded)")
        source = f"{info['name']}/{info['profile']}" if "name" in info and "profile" in info else ""
        try:  # what the run folder recorded: a hand-edited value is named with its file
            PageMeta("-", command, "", source)
        except PageError as err:
            raise PageError(f"{roots[0] / MATRIX_FILE}: {err} (running the matrix again rewrites the file)") from None
        meta = PageMeta(title or source or roots[0].name, command, description, source)
        page = publish(roots[0], page, meta, replace=args.replace)
        pages = Path(args.publish).resolve().parent  # the folder check_target checked
        print(f"wrote {page}, {write_index(pages)} and {write_claims(pages)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
