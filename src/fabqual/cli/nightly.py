"""``fabqual nightly``: the nightly rack run (one rack by its file lock, or a place from labgrid's coordinator)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fabqual.cli.args import Subcommands, seconds
from fabqual.errors import FabqualError


def _nightly(args: argparse.Namespace) -> int:
    from fabqual.run.nightly import run_nightly

    extra = list(args.pytest_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    run = {"reports": Path(args.reports), "tests": args.tests, "pytest_args": extra, "doctor": not args.no_doctor}
    # The run's pytest session and the exit code read these two from the environment.
    if args.results_db:
        from fabqual.results_db.url import database_url

        database_url(args.results_db)  # a wrong URL stops here, in one line, before the rack is taken
        os.environ["FABQUAL_RESULTS_DB"] = args.results_db
    if args.known_issues:
        from fabqual.results.known_issues import load_known_issues

        load_known_issues(args.known_issues)
        os.environ["FABQUAL_KNOWN_ISSUES"] = args.known_issues
    if args.coordinator:
        from fabqual.fleet.coordinator import check_address, check_tags
        from fabqual.fleet.nightly import run_on_place

        if args.topology:
            raise FabqualError("--topology and --coordinator exclude each other: the place's topology tag names it")
        return run_on_place(
            check_address(args.coordinator),
            check_tags(args.tags or []),
            topologies=Path(args.topologies),
            prio=args.prio,
            wait=args.wait,
            lease_s=args.lease,
            **run,
        )
    if args.tags:
        raise FabqualError("--tags chooses a labgrid place: give --coordinator HOST:PORT too")
    if not args.topology:
        raise FabqualError("give --topology FILE (one rack) or --coordinator HOST:PORT --tags KEY=VALUE (a fleet)")
    return run_nightly(Path(args.topology), wait=args.wait, **run)


def register(subparsers: Subcommands) -> None:
    nightly = subparsers.add_parser(
        "nightly",
        help="the nightly rack run: lock, doctor, all links, HTML report, JSON, JUnit",
        description="Exit 0: pass; 1: a test failed; 2: lab error or usage; 3: the rack is locked by another run."
        " Arguments after -- go to pytest.",
    )
    nightly.add_argument("--topology", help="topology file of the rack (held by a file lock)")
    nightly.add_argument("--wait", type=seconds, default=0.0, help="wait up to SECONDS for the rack (lock or place)")
    fleet = nightly.add_argument_group("a rack from labgrid's coordinator (instead of --topology)")
    fleet.add_argument("--coordinator", metavar="HOST:PORT", help="labgrid coordinator handing out the racks")
    fleet.add_argument("--tags", nargs="+", metavar="KEY=VALUE", help="what the place must offer, e.g. link=fc_nvme")
    fleet.add_argument("--prio", type=int, default=0, help="reservation priority (higher goes first; default 0)")
    fleet.add_argument(
        "--lease", type=seconds, default=600.0, help="seconds a killed runner keeps its place (default %(default)s)"
    )
    fleet.add_argument(
        "--topologies", default="topologies", help="directory of <topology tag>.yaml files (default %(default)s)"
    )
    nightly.add_argument("--reports", default="reports", help="directory for the report, JUnit and results")
    nightly.add_argument("--tests", default="tests/acceptance", help="what pytest runs (default tests/acceptance)")
    nightly.add_argument("--no-doctor", action="store_true", help="skip the doctor before the run")
    nightly.add_argument(
        "--results-db", metavar="URL", help="results database (default $FABQUAL_RESULTS_DB, else REPORTS/results.db)"
    )
    nightly.add_argument(
        "--known-issues", metavar="FILE", help="known-issues YAML; waived failures leave the exit code"
    )
    nightly.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then extra pytest arguments")
    nightly.set_defaults(func=_nightly)
