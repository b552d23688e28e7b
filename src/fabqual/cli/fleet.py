"""``fabqual fleet``: the fleet page from the results database."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fabqual.cli.args import Subcommands
from fabqual.cli.results import add_db_option, default_db
from fabqual.results.known_issues import ENV as KNOWN_ISSUES_ENV


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text}: give a number of runs between 1 and 1000")
    return value


def add_known_issues_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--known-issues",
        default=os.environ.get(KNOWN_ISSUES_ENV),
        metavar="FILE",
        help=f"known-issues YAML (stored in the database; default: the newest stored); env {KNOWN_ISSUES_ENV}",
    )


def _fleet(args: argparse.Namespace) -> int:
    import time

    from fabqual.fleet.page import write_fleet_page
    from fabqual.history.baseline import Policy
    from fabqual.results.known_issues import NO_KNOWN_ISSUES, load_known_issues
    from fabqual.results_db.known import latest_known_issues, store_known_issues
    from fabqual.results_db.store import ResultsDB
    from fabqual.results_db.url import describe

    known = load_known_issues(args.known_issues) if args.known_issues else NO_KNOWN_ISSUES
    t0 = time.monotonic()
    with ResultsDB.open(args.results_db or default_db()) as db:
        if args.known_issues:
            store_known_issues(db, known)
        else:  # the newest version a run or an earlier page stored
            known = latest_known_issues(db)
        policy = Policy(window=args.window)
        fleet = write_fleet_page(db, Path(args.output), nights=args.nights, policy=policy, known=known)
        where = describe(db.url)
    regressions = sum(1 for rack in fleet.racks for t in rack.trends if t.regressed_now)
    print(
        f"{args.output}: {len(fleet.racks)} rack(s), {len(fleet.link_types)} link type(s) from {where};"
        f" {regressions} metric(s) regressed in the newest runs; {time.monotonic() - t0:.1f}s"
    )
    return 0


def register(subparsers: Subcommands) -> None:
    fleet = subparsers.add_parser(
        "fleet",
        help="write the fleet page: racks x link types, metric trends with history bands",
        description="A static HTML page from the results database: latest verdict per rack and link type,"
        " failures of each rack's newest run (known / waived / flaky), and per-metric trends over the last"
        " runs with the baseline band learned from history and regressions marked.",
    )
    add_db_option(fleet)
    add_known_issues_option(fleet)
    fleet.add_argument("-o", "--output", default="reports/fleet.html", help="the page to write (default %(default)s)")
    fleet.add_argument("--nights", type=_count, default=30, help="runs per rack to plot (default %(default)s)")
    fleet.add_argument(
        "--window", type=_count, default=10, help="earlier passing runs per baseline (default %(default)s)"
    )
    fleet.set_defaults(func=_fleet)
