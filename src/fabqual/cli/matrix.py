"""``fabqual matrix [--pairs TARGET:HOST,...]``: the smoke slice on each release pair, one interop matrix."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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
    matrix.add_argument(
        "--record",
        action="store_true",
        help=f"after each pair, merge it into {RECORD} and regenerate the tables of {DOCUMENT}"
        " (paths under the current directory, the repository's root)",
    )
    matrix.add_argument(
        "--from",
        dest="from_run",
        metavar="RUN_DIR",
        default=None,
        help="run nothing: record the finished pairs of an earlier run (its RUN_DIR/matrix.json); implies --record",
    )
    matrix.set_defaults(func=_matrix)


RECORD = "benchmarks/results/matrix.json"
DOCUMENT = "docs/release-matrix.md"


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

    if args.from_run:
        if args.pairs or args.out:
            raise FabqualError("--from records an earlier run: give it without --pairs and --out")
        run_dir = Path(args.from_run)
        _record(_read_json(run_dir / "matrix.json", "the run's matrix"), run_dir.name)
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("reports") / f"matrix-{stamp}"
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill goes through the same cleanup as Ctrl-C

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def record(matrix: dict[str, Any]) -> None:
        _record(matrix, out.name)

    matrix = run_matrix(
        MatrixRun(args.pairs or all_pairs(), Path(args.tests), out), progress, record if args.record else None
    )
    for line in summary_lines(matrix):
        print(line)
    print(f"matrix: {out / 'matrix.html'}")
    bad = any(c["verdict"] in ("FAIL", "ERROR") for p in matrix["pairs"] for c in p.get("cells", []))
    return 1 if bad else 0


def _record(matrix: dict[str, Any], run_name: str) -> None:
    """Merge the run's finished pairs into the record and regenerate the document's tables."""
    from fabqual.matrix import record

    record_file, document = Path(RECORD), Path(DOCUMENT)
    if not record_file.parent.is_dir() or not document.parent.is_dir():
        raise FabqualError(f"--record writes {RECORD} and {DOCUMENT}: run it at the repository's root")
    old = _read_json(record_file, "the matrix record") if record_file.is_file() else None
    merged = record.merge(old, matrix, run_name)
    text = record.update_document(document.read_text() if document.is_file() else None, record.render_markdown(merged))
    _replace(record_file, json.dumps(merged, indent=1) + "\n")
    _replace(document, text)
    print(f"matrix: recorded {len(merged['pairs'])} pairs in {record_file} and {document}", file=sys.stderr)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise FabqualError(f"cannot read {what} {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise FabqualError(f"{what} {path} is not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise FabqualError(f"{what} {path} is not a JSON object")
    return data


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


__all__ = ["register"]
