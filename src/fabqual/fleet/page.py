"""The fleet page: every rack's latest verdict per link type, and each metric's trend with its history band.

``fabqual fleet --results-db URL -o fleet.html`` writes one static file (no
script, nothing fetched): a table of racks x link types (latest verdict and its
age), then per rack the failures of its newest run (known issue, waived and
flaky marks) and one trend plot per metric over the last N runs, with the
baseline band learned from earlier runs and regressions ringed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from fabqual.errors import FabqualError
from fabqual.fleet.trend import Point, trend_chart
from fabqual.history.baseline import DEFAULT_POLICY, Policy, learn, regressed
from fabqual.history.flaky import is_flaky
from fabqual.history.section import marks_html
from fabqual.results.known_issues import NO_KNOWN_ISSUES, KnownIssues, today
from fabqual.results.run import _atomic_write
from fabqual.results_db.history import (
    RunSummary,
    failing_rows_of_runs,
    latest_link_verdicts,
    metrics_of_runs,
    outcome_history,
    rack_names,
    recent_runs,
)
from fabqual.results_db.store import ResultsDB

NIGHTS = 30
VERDICT_CLASS = {"PASS": "pass", "FAIL": "fail", "ERROR": "error", "SKIPPED": "skip", "NOT RUN": "skip"}


@dataclass(frozen=True)
class Trend:
    key: str
    unit: str
    points: list[Point]

    @property
    def regressed_now(self) -> bool:
        return bool(self.points) and self.points[-1].regressed


@dataclass(frozen=True)
class FailedRow:
    nodeid: str
    outcome: str
    reason: str
    known: str
    tracker: str
    waived: bool
    flaky: bool


@dataclass(frozen=True)
class RackView:
    name: str
    runs: list[RunSummary]
    trends: list[Trend]
    failures: list[FailedRow]


@dataclass(frozen=True)
class Fleet:
    generated: datetime
    link_types: list[str]
    cells: dict[tuple[str, str], tuple[str, datetime, str]]
    racks: list[RackView]


def build_fleet(
    db: ResultsDB, *, nights: int = NIGHTS, policy: Policy = DEFAULT_POLICY, known: KnownIssues = NO_KNOWN_ISSUES
) -> Fleet:
    """Read what the page shows; the baseline at each point is learned from the runs before it."""
    with db.connect() as connection:
        cells = latest_link_verdicts(connection)
        views = []
        for rack in rack_names(connection):
            runs = recent_runs(connection, rack, nights + policy.window)
            measured = metrics_of_runs(connection, [r.id for r in runs])
            failing = failing_rows_of_runs(connection, [r.id for r in runs])
            trends = _trends(runs, measured, failing, nights, policy, known)
            failures: list[FailedRow] = []
            if runs:
                last = runs[-1]
                rows = failing.get(last.id, [])
                history = outcome_history(
                    connection, rack, [n for n, _, _ in rows], before=last.started, limit=policy.window
                )
                for nodeid, outcome, reason in rows:
                    issue = known.match(nodeid, reason)
                    failures.append(
                        FailedRow(
                            nodeid,
                            outcome,
                            reason,
                            issue.label if issue else "",
                            issue.tracker if issue else "",
                            bool(issue and issue.waiver and issue.waiver.active(today())),
                            is_flaky([outcome, *history.get(nodeid, [])]),
                        )
                    )
            views.append(RackView(rack, runs[-nights:], trends, failures))
    link_types = sorted({lt for _, lt in cells})
    return Fleet(datetime.now(UTC), link_types, cells, views)


def _trends(
    runs: list[RunSummary],
    measured: dict[int, list[dict[str, object]]],
    failing: dict[int, list[tuple[str, str, str]]],
    nights: int,
    policy: Policy,
    known: KnownIssues,
) -> list[Trend]:
    past: dict[tuple[str, str], list[float]] = defaultdict(list)  # (versions, key) → passing values, oldest first
    series: dict[str, list[Point]] = defaultdict(list)
    units: dict[str, str] = {}
    shown = {r.id for r in runs[-nights:]}
    for run in runs:
        known_tests = {}
        for nodeid, _outcome, reason in failing.get(run.id, []):
            issue = known.match(nodeid, reason)
            if issue is not None:
                known_tests[nodeid] = issue.id
        for m in measured.get(run.id, []):
            key, value = str(m["key"]), float(m["value"])  # type: ignore[arg-type]
            history = past[(run.versions_hash, key)]
            if run.id in shown:
                baseline = learn(history[::-1], policy)
                units[key] = str(m["unit"])
                threshold = m["threshold"]
                series[key].append(
                    Point(
                        run_key=run.run_key,
                        label=f"{run.started:%m-%d %H:%M}",
                        value=value,
                        threshold=float(threshold) if threshold is not None else None,  # type: ignore[arg-type]
                        passed=bool(m["passed"]),
                        baseline=baseline,
                        regressed=regressed(value, str(m["comparison"]), baseline),
                        known=known_tests.get(str(m["test"]), ""),
                    )
                )
            if m["passed"]:
                history.append(value)
    return [Trend(key, units[key], points) for key, points in sorted(series.items())]


def _age(then: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
td.pass { background: #d3f9d8; } td.fail { background: #ffc9c9; }
td.error { background: #ffe8cc; } td.skip { background: #f1f3f5; }
.trends { display: flex; flex-wrap: wrap; gap: 8px; }
.flag { color: #c92a2a; font-weight: bold; } .known { color: #862e9c; } .flaky { color: #e67700; }
"""


def render_fleet(fleet: Fleet) -> str:
    now = fleet.generated
    head = "".join(f"<th>{escape(lt)}</th>" for lt in fleet.link_types)
    body = []
    for rack in fleet.racks:
        cells = []
        for lt in fleet.link_types:
            cell = fleet.cells.get((rack.name, lt))
            if cell is None:
                cells.append('<td class="skip">-</td>')
                continue
            verdict, started, run_key = cell
            cells.append(
                f'<td class="{VERDICT_CLASS.get(verdict, "skip")}" title="{escape(run_key)}">'
                f"{escape(verdict)} <small>({_age(started, now)} ago)</small></td>"
            )
        regressions = sum(1 for t in rack.trends if t.regressed_now)
        flag = f'<span class="flag">{regressions} regression(s)</span>' if regressions else "no regression"
        body.append(f"<tr><th>{escape(rack.name)}</th>{''.join(cells)}<td>{flag}</td></tr>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>fabqual fleet</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>fabqual fleet</h1>",
        f"<p>Generated {now:%Y-%m-%d %H:%M} UTC from {sum(len(r.runs) for r in fleet.racks)} recent runs"
        f" of {len(fleet.racks)} rack(s).</p>",
        '<h2>Racks x link types</h2><table id="fleet-matrix">',
        f"<tr><th>rack</th>{head}<th>newest run vs history</th></tr>",
        *body,
        "</table>",
    ]
    for rack in fleet.racks:
        parts.append(f'<section class="rack" id="rack-{escape(rack.name)}"><h2>{escape(rack.name)}</h2>')
        if rack.failures:
            parts.append(
                "<h3>Failures in the newest run</h3><table><tr><th>test</th><th>outcome</th>"
                "<th>reason</th><th>marks</th></tr>"
            )
            for row in rack.failures:
                marks = marks_html(row.known, row.tracker, row.waived, row.flaky)
                parts.append(
                    f"<tr><td>{escape(row.nodeid)}</td><td>{escape(row.outcome)}</td>"
                    f"<td>{escape(row.reason[:300])}</td><td>{marks}</td></tr>"
                )
            parts.append("</table>")
        regressed = [t for t in rack.trends if t.regressed_now]
        if regressed:
            parts.append(
                '<p class="flag">Regressed against history in the newest run: '
                + ", ".join(escape(t.key) for t in regressed)
                + "</p>"
            )
        parts.append('<div class="trends">')
        parts.extend(trend_chart(t.key, t.unit, t.points) for t in rack.trends)
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_fleet_page(
    db: ResultsDB,
    out: Path,
    *,
    nights: int = NIGHTS,
    policy: Policy = DEFAULT_POLICY,
    known: KnownIssues = NO_KNOWN_ISSUES,
) -> Fleet:
    fleet = build_fleet(db, nights=nights, policy=policy, known=known)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(out, render_fleet(fleet))
    except OSError as error:
        raise FabqualError(f"fleet page {out} cannot be written: {error.strerror or error}") from None
    return fleet
