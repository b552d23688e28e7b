"""``fabqual matrix [--pairs TARGET:HOST,...]``: the smoke slice on each release pair, one interop matrix."""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from fabqual.cli.args import Subcommands
from fabqual.errors import FabqualError

if TYPE_CHECKING:
    from fabqual.lab.releases import Pair


def register(subparsers: Subcommands) -> None:
    matrix = subparsers.add_parser(
        "matrix", help="smoke-qualify every target x host release pair of the emulated lab; one interop matrix"
    )
    matrix.add_argument(
        "--pairs", type=_pairs, default=None, help="TARGET:HOST,... (default: all nine, e.g. bookworm:trixie)"
    )
    matrix.add_argument("--tests", default="tests/acceptance", help="acceptance tests (default: tests/acceptance)")
    matrix.add_argument("--out", default=None, help="directory for this run (default: reports/matrix-<time>)")
    matrix.set_defaults(func=_matrix)


def _pairs(text: str) -> tuple[Pair, ...]:
    from fabqual.lab.releases import Pair

    try:
        pairs = tuple(Pair.parse(item) for item in text.split(",") if item.strip())
    except FabqualError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not pairs:
        raise argparse.ArgumentTypeError("no pair given: write TARGET:HOST[,TARGET:HOST...]")
    return tuple(dict.fromkeys(pairs))


def _interrupt(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _matrix(args: argparse.Namespace) -> int:
    from fabqual.lab.releases import all_pairs
    from fabqual.matrix.runner import MatrixRun, run_matrix
    from fabqual.matrix.table import summary_lines

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("reports") / f"matrix-{stamp}"
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill goes through the same cleanup as Ctrl-C

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    matrix = run_matrix(MatrixRun(args.pairs or all_pairs(), Path(args.tests), out), progress)
    for line in summary_lines(matrix):
        print(line)
    print(f"matrix: {out / 'matrix.html'}")
    bad = any(c["verdict"] in ("FAIL", "ERROR") for p in matrix["pairs"] for c in p.get("cells", []))
    return 1 if bad else 0


__all__ = ["register"]
