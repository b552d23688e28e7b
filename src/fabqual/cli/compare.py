"""``fabqual compare``: two runs' results (and a baseline, and the rack's history) side by side."""

from __future__ import annotations

import argparse
import os
from typing import Any

from fabqual.cli.args import Subcommands
from fabqual.results.compare import DEFAULT_DEVIATION, compare_runs, format_table, load_deviations
from fabqual.results.run import load_results


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a fraction like 0.1") from None
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 10 (0.1 = 10%)")
    return value


def _compare(args: argparse.Namespace) -> int:
    previous, current = load_results(args.run_a), load_results(args.run_b)
    baseline = load_results(args.baseline) if args.baseline else None
    deviations = load_deviations(args.deviations) if args.deviations else {}
    rows = compare_runs(current, previous, baseline, deviations=deviations, default_deviation=args.max_deviation)
    run_b, run_a = current["run"], previous["run"]
    print(f"current run {run_b['id']} ({run_b['topology']}) against previous run {run_a['id']} ({run_a['topology']})")
    if baseline is not None:
        print(f"and baseline {baseline['run']['id']} ({args.baseline})")
    if run_a["topology"] != run_b["topology"]:
        print(f"note: the runs are on different topologies ({run_a['topology']} vs {run_b['topology']})")
    print(format_table(rows, with_baseline=baseline is not None))
    regressed = [row for row in rows if row.status == "REGRESSED"]
    flagged = _against_history(args, current, deviations) if args.results_db else []
    if regressed:
        print(f"{len(regressed)} metric(s) regressed: {', '.join(row.key for row in regressed)}")
    if flagged:
        print(f"{len(flagged)} metric(s) regressed against history: {', '.join(flagged)}")
    if regressed or flagged:
        return 1
    missing = sum(1 for row in rows if row.status == "MISSING")
    lost = f" ({missing} missing in the current run)" if missing else ""
    print(f"no regression among {len(rows)} metric(s){lost}")
    return 0


def _against_history(args: argparse.Namespace, current: Any, deviations: dict[str, float]) -> list[str]:
    """RUN_B against the baseline learned from its rack's history in the database; the flagged keys."""
    from fabqual.history.assess import assess_run
    from fabqual.history.table import format_history
    from fabqual.results.known_issues import NO_KNOWN_ISSUES, load_known_issues
    from fabqual.results_db.store import ResultsDB

    known = load_known_issues(args.known_issues) if args.known_issues else NO_KNOWN_ISSUES
    with ResultsDB.open(args.results_db) as db:
        assessment = assess_run(db, current, known=known, deviations=deviations)
    print(f"against the history of rack {assessment.rack} in {args.results_db} (baseline: median ± allowed deviation):")
    print(format_history(assessment))
    return [m.key for m in assessment.regressions]


def register(subparsers: Subcommands) -> None:
    compare = subparsers.add_parser(
        "compare",
        help="compare two runs' results (and a baseline); exit 1 when a metric regressed",
        description="Each metric of RUN_B against RUN_A (the previous run) and an optional baseline."
        " A metric regressed when it moved the bad way by more than its allowed deviation."
        " Exit 0: no regression; 1: something regressed; 2: a file is unreadable.",
    )
    compare.add_argument("run_a", metavar="RUN_A", help="the earlier results file (reports/results-*.json)")
    compare.add_argument("run_b", metavar="RUN_B", help="the later results file")
    compare.add_argument("--baseline", help="a results file kept as the reference (e.g. reports/baseline.json)")
    compare.add_argument(
        "--max-deviation",
        type=_fraction,
        default=DEFAULT_DEVIATION,
        help=f"allowed deviation for metrics without their own (default {DEFAULT_DEVIATION})",
    )
    compare.add_argument(
        "--deviations",
        default=os.environ.get("FABQUAL_DEVIATIONS"),
        help="YAML with a 'deviations:' mapping (metric or link_type.metric → fraction); env FABQUAL_DEVIATIONS",
    )
    compare.add_argument(
        "--results-db",
        metavar="URL",
        help="also judge RUN_B against the baseline learned from its rack's history in this database",
    )
    compare.add_argument("--known-issues", metavar="FILE", help="known-issues YAML: marks matching failures known")
    compare.set_defaults(func=_compare)
