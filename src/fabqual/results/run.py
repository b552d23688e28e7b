"""The JSON results of one run: metadata, testbed, every test and every metric.

One file per run, named so that concurrent runs never write the same file
(``results-<UTC time>-<pid>.json``), written to a temporary name and renamed
into place so a reader never sees half a file; ``results-latest.json`` is
replaced the same way. ``fabqual compare`` and the report's history section
read these files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabqual.errors import FabqualError

SCHEMA = "fabqual-results/1"
LATEST = "results-latest.json"
OUTCOMES = ("passed", "failed", "error", "skipped")
# A test's user property naming a node that stopped answering during it (fabqual.plugin.outcomes).
LOST_NODE_PROPERTY = "fabqual_lost_node"
# A conformance case's row (case, category, level), recorded by fabqual.plugin.conformance.
CASE_PROPERTY = "fabqual_conformance"

Results = dict[str, Any]


def run_stamp(when: datetime | None = None, pid: int | None = None) -> str:
    """``20240131T020304Z-4711``: sortable by time, unique per process."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{pid if pid is not None else os.getpid()}"


def metric_key(metric: dict[str, Any]) -> str:
    """What identifies "the same metric" across runs: link, metric name and context."""
    context = ",".join(f"{k}={v}" for k, v in sorted(metric.get("context", {}).items()))
    return f"{metric['link']}/{metric['metric']}" + (f"[{context}]" if context else "")


def link_type_verdicts(
    tests: Iterable[dict[str, Any]], link_types: Iterable[str] = (), planned: dict[str, int] | None = None
) -> dict[str, dict[str, Any]]:
    """Per link type: rows planned and run, counts of each outcome, skip reasons and one verdict word.

    FAIL when a test failed (the device under test missed), ERROR when the lab
    broke before a test could judge or a node was lost during a test (the run is
    incomplete, whatever the row that lost it says), PASS when something passed
    and nothing else went wrong, SKIPPED when nothing applied, NOT RUN for a
    declared link type without tests. ``planned``: rows selected per link type.
    A failed informational conformance case is counted as ``informational_failed``,
    not ``failed``: shown, never part of the verdict.
    """

    def empty() -> dict[str, Any]:
        return {**dict.fromkeys(OUTCOMES, 0), "informational_failed": 0, "lost_nodes": [], "skip_reasons": {}}

    table: dict[str, dict[str, Any]] = {t: empty() for t in link_types}
    for test in tests:
        row = table.setdefault(test.get("link_type") or "general", empty())
        outcome = test["outcome"]
        if outcome == "failed" and (test.get("conformance") or {}).get("level") == "informational":
            outcome = "informational_failed"
        row[outcome] = row.get(outcome, 0) + 1
        row["lost_nodes"] += [n for n in test.get("lost_nodes", []) if n not in row["lost_nodes"]]
        if test["outcome"] == "skipped":
            row["skip_reasons"][test["reason"]] = row["skip_reasons"].get(test["reason"], 0) + 1
    for link_type, row in table.items():
        row["planned"] = (planned or {}).get(link_type, sum(row[o] for o in OUTCOMES))
        row["run"] = row["passed"] + row["failed"] + row["informational_failed"]
        row["verdict"] = verdict_word(row)
    return table


def conformance_rows(tests: Iterable[dict[str, Any]], metrics: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per conformance case run on a link: case, category, level, verdict, measured times."""
    times: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for metric in metrics:
        case = (metric.get("context") or {}).get("case")
        if case:
            times.setdefault((metric.get("test"), case), []).append(
                {k: metric.get(k) for k in ("metric", "value", "unit", "threshold", "passed")}
            )
    rows = []
    for test in tests:
        conformance = test.get("conformance")
        if not conformance:
            continue
        verdict = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIPPED"}[test["outcome"]]
        rows.append(
            {
                "link": test.get("link") or "-",
                "link_type": test.get("link_type") or "-",
                "case": conformance["case"],
                "category": conformance.get("category", ""),
                "level": conformance.get("level", "unknown"),
                "verdict": verdict,
                "counted": verdict != "FAIL" or conformance.get("level") != "informational",
                "reason": test.get("reason", ""),
                "times": times.get((test["nodeid"], conformance["case"]), []),
                "test": test["nodeid"],
            }
        )
    return sorted(rows, key=lambda r: (r["link"], r["category"], r["case"]))


def verdict_word(counts: dict[str, Any]) -> str:
    if counts.get("lost_nodes"):
        return "ERROR"
    if counts.get("failed"):
        return "FAIL"
    if counts.get("error"):
        return "ERROR"
    if counts.get("passed"):
        return "PASS"
    if counts.get("skipped"):
        return "SKIPPED"
    return "NOT RUN"


def overall_verdict(verdicts: dict[str, dict[str, Any]]) -> str:
    totals: dict[str, Any] = {o: sum(row.get(o, 0) for row in verdicts.values()) for o in OUTCOMES}
    totals["lost_nodes"] = [n for row in verdicts.values() for n in row.get("lost_nodes", [])]
    return verdict_word(totals)


def write_results(results: Results, path: Path, *, latest: bool = True) -> Path:
    """Write ``results`` to ``path`` atomically; also replace ``results-latest.json`` beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, sort_keys=True, default=str) + "\n"
    _atomic_write(path, text)
    if latest:
        _atomic_write(path.parent / LATEST, text)
    return path


def _atomic_write(path: Path, text: str) -> None:
    # A temporary file in the same directory, then rename: readers and a
    # concurrent writer see either the old or the new file, never a mix.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; CI artifacts are read by others
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_results(path: str | Path) -> Results:
    """Read a results file; one clear line when it is missing or not ours."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FabqualError(f"results file {path} does not exist; pass a reports/results-*.json file") from None
    except (OSError, ValueError) as error:
        raise FabqualError(f"results file {path} is not readable JSON: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise FabqualError(f"results file {path} has schema {schema!r}, expected {SCHEMA!r}")
    return data


def previous_results(directory: Path, current_id: str, topology: str) -> tuple[Path, Results] | None:
    """The newest earlier run on the same topology in ``directory``, if any."""
    best: tuple[str, Path, Results] | None = None
    for path in directory.glob("results-*.json"):
        if path.name == LATEST:
            continue
        try:
            data = load_results(path)
        except FabqualError:
            continue
        run = data.get("run", {})
        if run.get("id") == current_id or run.get("topology") != topology:
            continue
        if run.get("id", "") >= current_id:  # ids sort by time: only earlier runs
            continue
        if best is None or run.get("id", "") > best[0]:
            best = (run.get("id", ""), path, data)
    return (best[1], best[2]) if best else None
