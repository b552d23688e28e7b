"""One run judged against its rack's history: regression flags, known issues, flaky rows, waivers.

Regression flags and threshold failures are different facts and are kept
apart: ``MetricFlag.passed`` is the fixed threshold's verdict, ``regressed``
the history baseline's. The run's verdict changes only through an active
waiver (a waived failure leaves it); known and flaky rows are marks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from fabqual.history.baseline import DEFAULT_POLICY, Baseline, Policy, deviation, learn, regressed
from fabqual.history.flaky import is_flaky
from fabqual.results.compare import allowed_deviation
from fabqual.results.known_issues import NO_KNOWN_ISSUES, KnownIssue, KnownIssues, effective_outcomes, today
from fabqual.results.run import Results, link_type_verdicts, metric_key, overall_verdict
from fabqual.results_db.history import metric_history, outcome_history
from fabqual.results_db.inventory import versions_hash
from fabqual.results_db.store import ResultsDB, parse_time


@dataclass(frozen=True)
class MetricFlag:
    key: str
    link_type: str
    metric: str
    unit: str
    comparison: str
    value: float
    passed: bool  # against the fixed threshold
    baseline: Baseline | None
    regressed: bool  # against the history baseline

    @property
    def change(self) -> float | None:
        return deviation(self.value, self.baseline)


@dataclass(frozen=True)
class RowMark:
    nodeid: str
    outcome: str
    reason: str
    known: KnownIssue | None
    waived: bool
    flaky: bool


@dataclass(frozen=True)
class Assessment:
    run_key: str
    rack: str
    metrics: tuple[MetricFlag, ...]
    rows: tuple[RowMark, ...]
    verdict: str  # after waivers
    notes: tuple[str, ...] = field(default=())

    @property
    def regressions(self) -> list[MetricFlag]:
        return [m for m in self.metrics if m.regressed]


def assess_run(
    db: ResultsDB,
    results: Results,
    *,
    rack: str | None = None,
    known: KnownIssues = NO_KNOWN_ISSUES,
    policy: Policy = DEFAULT_POLICY,
    deviations: Mapping[str, float] | None = None,
    on: date | None = None,
) -> Assessment:
    """Judge ``results`` against the history of its rack stored in ``db`` (runs before it only)."""
    run = results.get("run") or {}
    rack_name = rack or str(run.get("rack") or run.get("topology") or "unknown")
    started = parse_time(run.get("started"))
    if started is None:
        verdict = str(results.get("verdict", ""))
        return Assessment(str(run.get("id", "")), rack_name, (), (), verdict, ("run has no start time",))
    versions = versions_hash(results.get("testbed"), str(run.get("fabqual_version", "")))
    measured = results.get("metrics") or []
    tests = results.get("tests") or []
    with db.connect() as connection:
        values = metric_history(
            connection,
            rack_name,
            (metric_key(m) for m in measured),
            before=started,
            versions_hash=versions,
            limit=policy.window,
        )
        outcomes = outcome_history(
            connection, rack_name, (str(t.get("nodeid", "")) for t in tests), before=started, limit=policy.window
        )
    flags = []
    for m in measured:
        key = metric_key(m)
        floor = allowed_deviation(str(m["link_type"]), str(m["metric"]), deviations or {}, policy.floor)
        baseline = learn(values.get(key, []), Policy(policy.window, policy.min_samples, policy.sigmas, floor))
        value = float(m["value"])
        flags.append(
            MetricFlag(
                key=key,
                link_type=str(m["link_type"]),
                metric=str(m["metric"]),
                unit=str(m.get("unit", "")),
                comparison=str(m.get("comparison", ">=")),
                value=value,
                passed=bool(m.get("passed", False)),
                baseline=baseline,
                regressed=regressed(value, str(m.get("comparison", ">=")), baseline),
            )
        )
    day = on or today()
    marks = []
    for test in tests:
        nodeid, outcome, reason = str(test.get("nodeid", "")), str(test.get("outcome", "")), str(test.get("reason", ""))
        failing = outcome in ("failed", "error")
        issue = known.match(nodeid, reason) if failing else None
        waived = bool(issue and issue.waiver and issue.waiver.active(day))
        marks.append(RowMark(nodeid, outcome, reason, issue, waived, is_flaky([outcome, *outcomes.get(nodeid, [])])))
    effective = effective_outcomes(tests, known, day)
    verdict = overall_verdict(link_type_verdicts([t for t in effective if t["outcome"] != "waived"]))
    return Assessment(str(run.get("id", "")), rack_name, tuple(flags), tuple(marks), verdict)
