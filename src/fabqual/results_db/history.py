"""Reading history back: a rack's earlier values of metrics and outcomes of rows, newest first.

Every query takes a rack and a moment and looks only at runs that started
before it, so assessing an old run sees the history it had then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from fabqual.results_db.schema import metrics, racks, rows, run_links, runs
from fabqual.results_db.store import as_utc

_CHUNK = 500  # keys per IN (...) list: far below every backend's parameter limit


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(items))
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def metric_history(
    connection: Connection,
    rack: str,
    keys: Iterable[str],
    *,
    before: datetime,
    versions_hash: str | None,
    limit: int,
) -> dict[str, list[float]]:
    """Per metric key: values that passed their threshold in earlier runs on ``rack`` (same versions if given)."""
    out: dict[str, list[float]] = defaultdict(list)
    for chunk in _chunks(keys):
        conditions = [racks.c.name == rack, runs.c.started < before, metrics.c.passed, metrics.c.key.in_(chunk)]
        if versions_hash is not None:
            conditions.append(runs.c.versions_hash == versions_hash)
        query = (
            select(metrics.c.key, metrics.c.value)
            .select_from(metrics.join(runs, metrics.c.run_id == runs.c.id).join(racks, runs.c.rack_id == racks.c.id))
            .where(and_(*conditions))
            .order_by(runs.c.started.desc())
        )
        for row in connection.execute(query):
            if len(out[row.key]) < limit:
                out[row.key].append(float(row.value))
    return dict(out)


def outcome_history(
    connection: Connection, rack: str, nodeids: Iterable[str], *, before: datetime, limit: int
) -> dict[str, list[str]]:
    """Per test id: its outcomes in earlier runs on ``rack``, newest first."""
    out: dict[str, list[str]] = defaultdict(list)
    for chunk in _chunks(nodeids):
        query = (
            select(rows.c.nodeid, rows.c.outcome)
            .select_from(rows.join(runs, rows.c.run_id == runs.c.id).join(racks, runs.c.rack_id == racks.c.id))
            .where(racks.c.name == rack, runs.c.started < before, rows.c.nodeid.in_(chunk))
            .order_by(runs.c.started.desc())
        )
        for row in connection.execute(query):
            if len(out[row.nodeid]) < limit:
                out[row.nodeid].append(str(row.outcome))
    return dict(out)


@dataclass(frozen=True)
class RunSummary:
    id: int
    run_key: str
    rack: str
    started: datetime
    verdict: str
    versions_hash: str


def recent_runs(connection: Connection, rack: str, limit: int) -> list[RunSummary]:
    """The newest ``limit`` runs of ``rack``, oldest first (the order a trend is drawn in)."""
    query = (
        select(runs.c.id, runs.c.run_key, runs.c.started, runs.c.verdict, runs.c.versions_hash)
        .join(racks, runs.c.rack_id == racks.c.id)
        .where(racks.c.name == rack)
        .order_by(runs.c.started.desc())
        .limit(limit)
    )
    found = [
        RunSummary(r.id, r.run_key, rack, as_utc(r.started), r.verdict, r.versions_hash)
        for r in connection.execute(query)
    ]
    return found[::-1]


def rack_names(connection: Connection) -> list[str]:
    return [r.name for r in connection.execute(select(racks.c.name).order_by(racks.c.name))]


def latest_link_verdicts(connection: Connection) -> dict[tuple[str, str], tuple[str, datetime, str]]:
    """(rack, link type) → (verdict, started, run_key) of the newest run that ran that link type."""
    newest = (
        select(run_links.c.link_type, runs.c.rack_id, func.max(runs.c.started).label("started"))
        .join(runs, run_links.c.run_id == runs.c.id)
        .where(run_links.c.verdict != "NOT RUN")
        .group_by(run_links.c.link_type, runs.c.rack_id)
        .subquery()
    )
    query = (
        select(racks.c.name, run_links.c.link_type, run_links.c.verdict, runs.c.started, runs.c.run_key)
        .join(runs, run_links.c.run_id == runs.c.id)
        .join(racks, runs.c.rack_id == racks.c.id)
        .join(
            newest,
            and_(
                newest.c.link_type == run_links.c.link_type,
                newest.c.rack_id == runs.c.rack_id,
                newest.c.started == runs.c.started,
            ),
        )
    )
    return {(r.name, r.link_type): (r.verdict, as_utc(r.started), r.run_key) for r in connection.execute(query)}


def metrics_of_runs(connection: Connection, run_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Run id → its metrics (key, test, link_type, metric, unit, comparison, value, threshold, passed)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    ids = sorted(set(run_ids))
    for start in range(0, len(ids), _CHUNK):
        query = select(
            metrics.c.run_id,
            metrics.c.key,
            metrics.c.test,
            metrics.c.link_type,
            metrics.c.metric,
            metrics.c.unit,
            metrics.c.comparison,
            metrics.c.value,
            metrics.c.threshold,
            metrics.c.passed,
        ).where(metrics.c.run_id.in_(ids[start : start + _CHUNK]))
        for row in connection.execute(query):
            out[row.run_id].append(dict(row._mapping))
    return dict(out)


def failing_rows_of_runs(connection: Connection, run_ids: Iterable[int]) -> dict[int, list[tuple[str, str, str]]]:
    """Run id → (nodeid, outcome, reason) of each failed or errored row."""
    out: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    ids = sorted(set(run_ids))
    for start in range(0, len(ids), _CHUNK):
        query = select(rows.c.run_id, rows.c.nodeid, rows.c.outcome, rows.c.reason).where(
            rows.c.run_id.in_(ids[start : start + _CHUNK]), rows.c.outcome.in_(("failed", "error"))
        )
        for row in connection.execute(query):
            out[row.run_id].append((row.nodeid, row.outcome, row.reason))
    return dict(out)
