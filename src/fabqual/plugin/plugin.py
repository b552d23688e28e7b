"""fabqual's pytest plugin: options, markers, link parametrization, verdict hooks.

Registered through the ``pytest11`` entry point, so any repository with fabqual
installed can write qualification tests with these fixtures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fabqual.errors import FabqualError
from fabqual.health import bad_kernel_lines, kernel_lines_since, mark_kernel_log
from fabqual.links.base import MissingLink, offers
from fabqual.linkspec import link_spec, link_types
from fabqual.plugin.keys import FAILED_MEASUREMENTS, RUN
from fabqual.plugin.outcomes import row_nodes
from fabqual.plugin.run import QualificationRun
from fabqual.report.pytest_report import REPORTED_RUN

TOPOLOGY_ENV = "FABQUAL_TOPOLOGY"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fabqual", "fabric qualification")
    group.addoption(
        "--topology",
        default=os.environ.get(TOPOLOGY_ENV),
        help=f"topology file of the rack (env {TOPOLOGY_ENV}); without it the emulated lab is booted",
    )
    group.addoption("--profile", default=None, help="thresholds profile (default: the topology's)")
    group.addoption("--keep-lab", action="store_true", default=False, help="leave the emulated lab running at the end")
    group.addoption("--no-health-gate", action="store_true", default=False, help="do not check kernel logs after tests")
    group.addoption(
        "--results-db",
        default=None,
        metavar="URL",
        help="store the run in this results database (sqlite:///path or postgresql://...;"
        " env FABQUAL_RESULTS_DB, else results.db beside the results JSON)",
    )
    group.addoption(
        "--known-issues",
        default=None,
        metavar="FILE",
        help="known-issues YAML marking known failures; its waivers leave failures out (env FABQUAL_KNOWN_ISSUES)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # import_plugin is a no-op when `-p fabqual.report.pytest_report` already loaded it.
    config.pluginmanager.import_plugin("fabqual.report.pytest_report")
    config.pluginmanager.import_plugin("fabqual.plugin.outcomes")
    config.pluginmanager.import_plugin("fabqual.plugin.conformance")
    config.pluginmanager.import_plugin("fabqual.plugin.fabric_counters")
    try:
        known = link_types()
    except FabqualError as error:  # a broken link type plugin: its one line, not a traceback
        raise pytest.UsageError(str(error)) from None
    for link_type in known:
        config.addinivalue_line("markers", f"{link_type}: runs on {link_type} links")
    config.addinivalue_line("markers", "capability(name): the link capability the test needs (e.g. nvme_namespace)")
    config.addinivalue_line("markers", "emulated_lab: boots the emulated lab (slow)")

    topology = config.getoption("--topology")
    config.stash[RUN] = QualificationRun(
        topology_file=Path(topology) if topology else None,
        # pytest owns --strict (strict markers); fabqual reads the same flag: a formal
        # qualification run, where a test that does not apply is an error, not a skip.
        strict=bool(config.getoption("strict")),
        profile_override=config.getoption("--profile"),
        keep_lab=config.getoption("--keep-lab"),
        progress=_progress_line(config),
    )
    config.stash[REPORTED_RUN] = config.stash[RUN]  # what the report reads of the run
    if topology:
        try:
            _ = config.stash[RUN].topology  # a bad file fails here, before any node is touched
        except FabqualError as error:
            raise pytest.UsageError(str(error)) from None
    # SIGTERM (a CI job cancelled) gets the same orderly teardown as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)


def _progress_line(config: pytest.Config) -> Callable[[str], None]:
    """Print a line now, past pytest's output capture: the first image build and lab boot take minutes."""

    def say(text: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        terminal = config.pluginmanager.getplugin("terminalreporter")
        uncaptured = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with uncaptured:
            if terminal is not None:
                terminal.write_line(f"fabqual lab: {text}")
                terminal.flush()
            else:
                print(f"fabqual lab: {text}", file=sys.stderr, flush=True)

    return say


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is not None:
        run.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``link`` over every link of the topology offering the test's capability."""
    if "link" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("capability")
    if marker is None:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} uses `link` without @pytest.mark.capability(...)")
    capability = marker.args[0]
    run: QualificationRun = metafunc.config.stash[RUN]
    try:
        links = [link for link in run.topology.links if offers(link, capability)]
    except FabqualError as error:
        raise pytest.UsageError(str(error)) from None
    per_type: dict[str, int] = {}
    for link in links:
        per_type[link.type] = per_type.get(link.type, 0) + 1
    params = []
    for link in links:
        short = link_spec(link.type).short
        ident = f"tr={short}" if per_type[link.type] == 1 else f"tr={short}-link={link.name}"
        params.append(pytest.param(link, id=ident, marks=getattr(pytest.mark, link.type)))
    if not params:
        params = [pytest.param(MissingLink(capability, run.topology.name), id=f"no-{capability}")]
    metafunc.parametrize("link", params, indirect=True, scope="session")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Fail a test on threshold misses it recorded, and on kernel complaints during it."""
    run: QualificationRun = item.config.stash[RUN]
    markers = _mark_nodes(item, run)
    result = yield
    messages = [m.describe() for m in item.stash.get(FAILED_MEASUREMENTS, [])]
    for executor, marker in markers:
        bad = bad_kernel_lines(kernel_lines_since(executor, marker))
        if bad:
            quoted = "\n    ".join(bad[:20])
            messages.append(f"{executor.node}: the kernel logged problems during this test:\n    {quoted}")
    if messages:
        pytest.fail("\n".join(messages), pytrace=False)
    return result


def _mark_nodes(item: pytest.Item, run: QualificationRun) -> list[tuple[Any, Any]]:
    if item.config.getoption("--no-health-gate"):
        return []
    return [(run.executor(n), mark_kernel_log(run.executor(n), item.name)) for n in row_nodes(item)]
