"""``fabqual results import``: put results files of earlier runs into the results database."""

from __future__ import annotations

import argparse
import os
import sys

from fabqual.cli.args import Subcommands
from fabqual.errors import FabqualError
from fabqual.results_db.url import DEFAULT_DB, ENV


def default_db() -> str:
    return os.environ.get(ENV) or str(DEFAULT_DB)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-db",
        default=None,
        metavar="URL",
        help=f"sqlite:///path/results.db or postgresql://user@host/db (default ${ENV}, else {DEFAULT_DB})",
    )


def _import(args: argparse.Namespace) -> int:
    from fabqual.results.run import load_results
    from fabqual.results_db.store import ResultsDB
    from fabqual.results_db.url import describe

    with ResultsDB.open(args.results_db or default_db()) as db:
        new = old = bad = 0
        for name in args.files:
            try:
                results = load_results(name)
                stored = db.store(results, source=os.path.abspath(name), rack=args.rack)
            except FabqualError as error:
                print(f"fabqual results: {error}", file=sys.stderr)
                bad += 1
                continue
            if stored.new:
                new += 1
            else:
                old += 1
                print(f"{name}: run {stored.run_key} is already stored; skipped")
        print(f"{describe(db.url)}: {new} run(s) stored, {old} already there, {bad} unreadable")
    return 2 if bad else 0


def register(subparsers: Subcommands) -> None:
    results = subparsers.add_parser("results", help="the results database: import earlier runs")
    sub = results.add_subparsers(dest="results_command", required=True)
    importer = sub.add_parser(
        "import",
        help="store results files (reports/results-*.json) in the database",
        description="Store each FILE in the results database; a run already stored is skipped."
        " Exit 0: all stored or already there; 2: a file was unreadable (the others are stored).",
    )
    add_db_option(importer)
    importer.add_argument("--rack", help="store under this rack name (default: the run's topology name)")
    importer.add_argument("files", nargs="+", metavar="FILE", help="results-*.json files")
    importer.set_defaults(func=_import)
