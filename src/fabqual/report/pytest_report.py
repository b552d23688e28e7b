"""pytest plugin: the qualification report, the JSON results and the JUnit testbed properties.

Registered by fabqual's main plugin. What it does in a session:

- on the first use of the ``fabqual_run`` fixture (the moment the run reaches
  the rack) it collects the inventory of every node; an unreachable node is
  recorded as an error line, never a crash;
- it records every test's outcome, link, reason and the ``fabqual_metric``
  user properties, plus raw tool outputs attached with the ``attach_output``
  fixture (shown in the test's log in the HTML report and kept in the JSON);
- at the end it writes ``results-<stamp>.json`` and ``results-latest.json``
  (directory: ``$FABQUAL_RESULTS_FILE``'s, else ``$FABQUAL_REPORTS_DIR``, else
  the ``--html``/``--junitxml`` file's, else ``reports/``), adds the testbed to
  the JUnit XML as testsuite properties, and puts the document sections
  (verdict, inventory, metrics, plots, history, failures) into the pytest-html
  report.

Other code adds inventory tables (ESXi and vCenter builds) with
:func:`contribute_inventory`.
"""

from __future__ import annotations

import getpass
import html
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

import fabqual
from fabqual.executors.base import Executor
from fabqual.linkspec import link_types
from fabqual.measure import USER_PROPERTY
from fabqual.redaction import contains_secret, install_log_redaction, of_topology, redact
from fabqual.report.document import render_sections
from fabqual.report.inventory import collect_inventory
from fabqual.results.compare import MetricDelta, compare_runs, load_deviations
from fabqual.results.run import (
    CASE_PROPERTY,
    LOST_NODE_PROPERTY,
    Results,
    conformance_rows,
    link_type_verdicts,
    load_results,
    overall_verdict,
    previous_results,
    run_stamp,
    write_results,
)
from fabqual.topology.model import Topology

OUTPUT_PROPERTY = "fabqual_output"
RESULTS_FILE_ENV = "FABQUAL_RESULTS_FILE"
REPORTS_DIR_ENV = "FABQUAL_REPORTS_DIR"
RUN_ID_ENV = "FABQUAL_RUN_ID"  # set by `fabqual nightly` so all files of a run share its id
BASELINE_ENV = "FABQUAL_BASELINE"
DEVIATIONS_ENV = "FABQUAL_DEVIATIONS"
PLACE_ENV, PLACE_TAGS_ENV = "FABQUAL_PLACE", "FABQUAL_PLACE_TAGS"  # set by fabqual.fleet.nightly
MAX_OUTPUT_CHARS = 256_000  # per attached output in the JSON: a runaway tool must not bloat it


@dataclass
class _Session:
    """What the plugin gathers during one session."""

    stamp: str
    started: datetime
    t0: float
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    inventory: dict[str, Any] | None = None
    extra: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)  # rows selected per link type
    reached_rack: bool = False
    html_report: Any = None
    html_sections: str = ""
    results: Results | None = None
    results_path: Path | None = None


class ReportedRun(Protocol):
    """What the report reads of a session's run. fabqual's main plugin stores its run under
    :data:`REPORTED_RUN`; the report never imports the plugin."""

    @property
    def loaded_topology(self) -> Topology | None:
        """The topology once the run has read it, else None (the report never loads it itself)."""

    @property
    def topology(self) -> Topology: ...

    @property
    def profile(self) -> str: ...

    def executor(self, node_name: str) -> Executor: ...


REPORTED_RUN = pytest.StashKey[ReportedRun]()
STATE = pytest.StashKey[_Session]()
OUTPUTS = pytest.StashKey[list[tuple[str, str]]]()
EMITTED = pytest.StashKey[int]()


def contribute_inventory(config: pytest.Config, section: str, rows: list[dict[str, str]]) -> None:
    """Add a table to the report's inventory, e.g. ``("vSphere", [{"host": ..., "build": ...}])``.

    Values are redacted like every other inventory fact. Call it any time
    before the session ends (the vSphere driver does so after logging in).
    """
    state = config.stash.get(STATE, None)
    if state is not None:
        state.extra[section] = [{str(k): str(v) for k, v in row.items()} for row in rows]


def _run(config: pytest.Config) -> ReportedRun | None:
    """The run of the main plugin, or None when it is not active."""
    return config.stash.get(REPORTED_RUN, None)


def _secrets(config: pytest.Config) -> list[str]:
    run = _run(config)
    topology = run.loaded_topology if run is not None else None
    return of_topology(topology) if topology is not None else []


def pytest_configure(config: pytest.Config) -> None:
    install_log_redaction()  # every log record, whichever handler writes it (--log-file, reports)
    collector = ReportCollector(config)
    config.stash[STATE] = collector.state
    config.pluginmanager.register(collector, "fabqual-report-collector")


def pytest_unconfigure(config: pytest.Config) -> None:
    collector = config.pluginmanager.get_plugin("fabqual-report-collector")
    if collector is not None:
        config.pluginmanager.unregister(collector)


@pytest.fixture
def attach_output(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``attach_output("ib_write_bw server", text)``: keep a tool's raw output with this test.

    It appears in the test's log in the HTML report and in the JSON results;
    secret values are redacted.
    """

    def attach(title: str, text: str) -> None:
        secrets = _secrets(request.config)
        request.node.stash.setdefault(OUTPUTS, []).append((str(title), redact(str(text), secrets)))

    return attach


class ReportCollector:
    """The per-session half of the plugin: gathers, then writes at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        stamp = os.environ.get(RUN_ID_ENV) or run_stamp()
        self.state = _Session(stamp=stamp, started=datetime.now(UTC), t0=time.monotonic())

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The rows planned per link type: what was selected to run, before anything ran."""
        for item in session.items:
            link_type = _test_entry(item)["link_type"]
            if link_type:
                self.state.planned[link_type] = self.state.planned.get(link_type, 0) + 1

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        """Collect the inventory right after the run first reaches the rack (never at collection)."""
        result = yield
        if fixturedef.argname == "fabqual_run" and not self.state.reached_rack:
            self.state.reached_rack = True
            self.state.inventory = _collect(result)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        entry = self.state.tests.setdefault(item.nodeid, _test_entry(item))
        # Raw outputs attached so far become sections of this phase's report:
        # pytest-html shows them in the test's log, the terminal on failure.
        outputs = item.stash.get(OUTPUTS, [])
        for title, text in outputs[item.stash.get(EMITTED, 0) :]:
            report.sections.append((f"fabqual output: {title}", text))
            entry["outputs"].append({"title": title, "text": text[:MAX_OUTPUT_CHARS]})
        item.stash[EMITTED] = len(outputs)
        _redact_report(report, _secrets(self.config))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.state.tests.setdefault(report.nodeid, _test_entry(None, report.nodeid))
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        entry["metrics"] = [json.loads(str(value)) for name, value in report.user_properties if name == USER_PROPERTY]
        entry["lost_nodes"] = [str(value) for name, value in report.user_properties if name == LOST_NODE_PROPERTY]
        for name, value in report.user_properties:
            if name == CASE_PROPERTY:  # the level as the profile gave it (the marker gave case and category)
                entry["conformance"] = {**(entry.get("conformance") or {}), **json.loads(str(value))}
        if report.when == "call":
            if report.failed:
                entry.update(outcome="failed", reason=_reason(report))
            elif report.skipped:
                entry.update(outcome="skipped", reason=_reason(report))
        elif report.failed:  # setup or teardown broke: the lab, not the device under test
            if entry["outcome"] != "failed":
                entry.update(outcome="error", reason=f"{report.when}: {_reason(report)}")
        elif report.skipped:
            entry.update(outcome="skipped", reason=_reason(report))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the JSON results and testbed properties before junitxml and pytest-html write theirs."""
        state = self.state
        if not _wants_results(state):
            return
        results = _build_results(self.config, state, exitstatus)
        state.results = results
        path = _results_path(self.config, state.stamp)
        stored = _database(self.config, results, path)  # first, so a note about the database reaches the JSON too
        state.results_path = write_results(results, path)
        try:
            history, previous_id, baseline_id = _history(state.results_path, results)
        except Exception as error:  # a corrupt older file must not cost today's report
            history, previous_id, baseline_id = None, None, None
            results.setdefault("notes", []).append(f"history not compared: {error}")
        state.html_sections = render_sections(results, history, previous_id, baseline_id) + stored
        _junit_properties(self.config, results)
        if state.html_report is not None:
            state.html_report.title = f"Qualification report: {results['run']['topology']} ({results['verdict']})"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        self.state.html_report = report
        report.title = "Qualification report"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: Any
    ) -> None:
        if self.state.html_sections:
            prefix.append(self.state.html_sections)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        results = self.state.results
        if results is None:
            return
        verdicts = ", ".join(f"{t} {c['verdict']}" for t, c in sorted(results["verdicts"].items()))
        terminalreporter.write_sep("-", f"fabqual: {results['verdict']} ({verdicts})")
        terminalreporter.write_line(f"fabqual results: {self.state.results_path}")


def _redact_report(report: pytest.TestReport, secrets: list[str]) -> None:
    """Hide secrets in what pytest-html, JUnit XML and the terminal show of a test: the failure
    message and traceback, skip reason, captured output and logs, user properties."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (file, line, reason)
        report.longrepr = (longrepr[0], longrepr[1], redact(str(longrepr[2]), secrets))
    elif longrepr is not None:
        text = str(longrepr)
        if contains_secret(text) or any(s and s in text for s in secrets):
            report.longrepr = redact(text, secrets)  # plain text from here on: the secret is gone
    report.sections = [(title, redact(content, secrets)) for title, content in report.sections]
    report.user_properties = [
        (name, redact(value, secrets) if isinstance(value, str) else value) for name, value in report.user_properties
    ]


def _collect(run: ReportedRun) -> dict[str, Any]:
    try:
        return collect_inventory(run.topology, run.executor)
    except Exception as error:  # the report must never break a qualification run
        return {"nodes": [], "error": f"inventory not collected: {error}"}


def _test_entry(item: pytest.Item | None, nodeid: str = "") -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    link = callspec.params.get("link") if callspec is not None else None
    markers = item.iter_markers() if item is not None else iter(())
    link_type = getattr(link, "type", None) or next((m.name for m in markers if m.name in link_types()), None)
    case = item.get_closest_marker("conformance") if item is not None else None
    conformance = {k: str(case.kwargs.get(k, "")) for k in ("case", "category")} if case is not None else None
    return {
        "conformance": conformance,
        "nodeid": item.nodeid if item is not None else nodeid,
        "link": getattr(link, "name", None),
        "link_type": link_type,
        "outcome": "passed",
        "reason": "",
        "duration_s": 0.0,
        "outputs": [],
        "metrics": [],
        "lost_nodes": [],
    }


def _reason(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    return text.strip().removeprefix("Failed: ")[:2000]


def _results_path(config: pytest.Config, stamp: str) -> Path:
    explicit = os.environ.get(RESULTS_FILE_ENV)
    if explicit:
        return Path(explicit)
    directory = os.environ.get(REPORTS_DIR_ENV)
    if not directory:
        for option in ("htmlpath", "xmlpath"):
            value = getattr(config.option, option, None)
            if value:
                directory = str(Path(value).parent)
                break
    return Path(directory or "reports") / f"results-{stamp}.json"


def _wants_results(state: _Session) -> bool:
    """Only qualification sessions write results: not the repository's own unit tests."""
    if os.environ.get(RESULTS_FILE_ENV) or state.reached_rack:
        return True
    return any(t.get("link_type") or t.get("metrics") for t in state.tests.values())


def _build_results(config: pytest.Config, state: _Session, exitstatus: int) -> Results:
    run = _run(config)
    topology_name, topology_file, profile, declared = "unknown", "", "unknown", []
    if run is not None:
        try:
            topology_name, topology_file = run.topology.name, run.topology.source
            declared = sorted({link.type for link in run.topology.links})
            profile = run.profile
        except Exception as error:  # a broken topology is reported by the main plugin
            topology_file = f"not loaded: {error}"
    tests = list(state.tests.values())
    metrics = []
    for test in tests:
        for metric in test.get("metrics", []):
            metrics.append({**metric, "test": test["nodeid"]})
    _fill_case_levels(run, tests)
    verdicts = link_type_verdicts(tests, declared, state.planned)
    testbed = dict(state.inventory) if state.inventory is not None else None
    if testbed is not None:
        testbed["extra"] = {**testbed.get("extra", {}), **state.extra}
    results: Results = {
        "schema": "fabqual-results/1",
        "run": {
            "id": state.stamp,
            "started": state.started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - state.t0, 3),
            "host": socket.gethostname(),
            "user": getpass.getuser(),
            "command": shlex.join(["pytest", *config.invocation_params.args]),
            "fabqual_version": fabqual.__version__,
            "pytest_version": pytest.__version__,
            "python": sys.version.split()[0],
            "topology": topology_name,
            "topology_file": topology_file,
            "profile": profile,
            "strict": bool(getattr(run, "strict", False)),
            "pytest_exit_status": int(exitstatus),
            **_place(),
        },
        "verdict": overall_verdict(verdicts),
        "verdicts": verdicts,
        "conformance": conformance_rows(tests, metrics),
        "testbed": testbed,
        "tests": [{k: v for k, v in t.items() if k != "metrics"} for t in tests],
        "metrics": metrics,
    }
    redacted: Results = redact(results, _secrets(config))
    return redacted


def _fill_case_levels(run: Any, tests: list[dict[str, Any]]) -> None:
    """A case that ended before its fixture ran (skipped, lab error) gets its level from the profile."""
    for test in tests:
        conformance = test.get("conformance")
        if conformance and "level" not in conformance:
            try:
                conformance["level"] = run.thresholds.case_policy(conformance["case"]).level
            except Exception:  # no profile, or no entry: the row says so instead of breaking the report
                conformance["level"] = "unknown"


def _place() -> dict[str, Any]:
    """The labgrid place the run was handed (set by ``fabqual nightly --coordinator``), if any."""
    place = os.environ.get(PLACE_ENV)
    if not place:
        return {}
    try:
        tags = json.loads(os.environ.get(PLACE_TAGS_ENV) or "{}")
    except ValueError:
        tags = {}
    return {"place": place, "place_tags": tags if isinstance(tags, dict) else {}}


def _history(path: Path, results: Results) -> tuple[list[MetricDelta] | None, str | None, str | None]:
    """The current run against the previous one in the same directory and an optional baseline."""
    found = previous_results(path.parent, results["run"]["id"], results["run"]["topology"])
    baseline_file = os.environ.get(BASELINE_ENV) or str(path.parent / "baseline.json")
    baseline = load_results(baseline_file) if Path(baseline_file).exists() else None
    if found is None and baseline is None:
        return None, None, None
    deviations_file = os.environ.get(DEVIATIONS_ENV)
    deviations = load_deviations(deviations_file) if deviations_file else {}
    previous = found[1] if found else None
    rows = compare_runs(results, previous, baseline, deviations=deviations)
    return rows, (previous["run"]["id"] if previous else "none"), (baseline["run"]["id"] if baseline else None)


def _database(config: pytest.Config, results: Results, path: Path) -> str:
    """Store the run in the results database and render its judgment against history."""
    from fabqual.errors import FabqualError
    from fabqual.history.record import record_run
    from fabqual.history.section import render_history_section

    try:
        assessment, database = record_run(
            results,
            path,
            database=config.getoption("--results-db", default=None),
            known_issues=config.getoption("--known-issues", default=None),
        )
    except FabqualError as error:
        results.setdefault("notes", []).append(f"not stored in the results database: {error}")
        return f'<p class="fabqual-note">Not stored in the results database: {html.escape(str(error))}</p>'
    return render_history_section(assessment, database)


def _junit_properties(config: pytest.Config, results: Results) -> None:
    # What record_testsuite_property does, without needing a fixture: the
    # properties land on the <testsuite> element of the JUnit XML.
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    run = results["run"]
    xml.add_global_property("fabqual.topology", run["topology"])
    xml.add_global_property("fabqual.topology_file", run["topology_file"])
    xml.add_global_property("fabqual.profile", run["profile"])
    xml.add_global_property("fabqual.run_id", run["id"])
    xml.add_global_property("fabqual.verdict", results["verdict"])
    for link_type, counts in sorted(results["verdicts"].items()):
        xml.add_global_property(f"fabqual.verdict.{link_type}", counts["verdict"])
    for node in (results.get("testbed") or {}).get("nodes", []):
        facts = node.get("facts", {})
        xml.add_global_property(f"fabqual.node.{node['name']}.kernel", facts.get("kernel", "unreachable"))
        if facts.get("hostname"):
            xml.add_global_property(f"fabqual.node.{node['name']}.hostname", facts["hostname"])
