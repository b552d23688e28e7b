"""The fixtures qualification tests use: topology, nodes, links by capability, metric checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from fabqual.errors import FabqualError, LabError
from fabqual.executors.base import Executor
from fabqual.line_rate import LineRate
from fabqual.links.base import LinkContext, LinkSession, MissingLink, driver_for
from fabqual.measure import USER_PROPERTY, Measurement
from fabqual.plugin.keys import FAILED_MEASUREMENTS, RUN
from fabqual.plugin.run import QualificationRun
from fabqual.report.pytest_report import contribute_inventory
from fabqual.topology.model import Link, Topology


@pytest.fixture(scope="session")
def fabqual_run(request: pytest.FixtureRequest) -> Iterator[QualificationRun]:
    """The run, with the emulated lab booted when no topology was given."""
    run = request.config.stash[RUN]
    try:
        run.start_lab()
    except FabqualError as error:
        raise LabError(f"the emulated lab did not come up: {error}") from None
    try:
        _sweep(request, run)
        yield run
    finally:
        run.stop_lab()


def _sweep(request: pytest.FixtureRequest, run: QualificationRun) -> None:
    """Before anything changes: undo what killed earlier runs left on the nodes this session will use."""
    nodes = sorted(
        {
            end.node
            for item in request.session.items
            if isinstance(link := getattr(getattr(item, "callspec", None), "params", {}).get("link"), Link)
            for end in link.endpoints.values()
        }
    )
    if not nodes:
        return
    results = run.sweep(nodes)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for result in results:
                reporter.write_line(f"fabqual sweep: {result.line()} ({result.seconds:.1f} s)")
    rows = [{"node": r.node, "swept": r.line().split(": ", 1)[1], "seconds": f"{r.seconds:.1f}"} for r in results]
    contribute_inventory(request.config, "Sweep of earlier killed runs", rows)


@pytest.fixture(scope="session")
def fabqual_topology(fabqual_run: QualificationRun) -> Topology:
    return fabqual_run.topology


@pytest.fixture(scope="session")
def node_executor(fabqual_run: QualificationRun) -> Callable[[str], Executor]:
    """``node_executor("tgt")`` → the executor for that node (connections are reused)."""
    return fabqual_run.executor


@pytest.fixture(scope="session")
def thresholds(fabqual_run: QualificationRun) -> Any:
    return fabqual_run.thresholds


@pytest.fixture(scope="session")
def link(request: pytest.FixtureRequest) -> Link | MissingLink:
    """The link this test row runs on (parametrized by the plugin from the capability marker)."""
    row: Link | MissingLink = request.param
    return row


@pytest.fixture(scope="session")
def link_session(
    request: pytest.FixtureRequest, link: Link | MissingLink, fabqual_run: QualificationRun
) -> Iterator[LinkSession]:
    """The link brought up once for all its tests, and torn down after the last one.

    What the driver learnt while bringing it up (target backend, WWPNs, GIDs,
    vCenter and ESXi builds, a simulator's missing calls) goes into the report's
    inventory, one table per link.
    """
    if isinstance(link, MissingLink):
        pytest.skip(link.reason)  # a strict run makes it an error (fabqual.plugin.outcomes)
    problems = fabqual_run.doctor().problems_for(link.name)
    if problems:
        lines = "\n  ".join(p.line() for p in problems)
        raise LabError(f"link {link.name} cannot be brought up; the doctor found:\n  {lines}")
    driver = driver_for(LinkContext(fabqual_run.topology, link, fabqual_run.executor, run_dirs=fabqual_run.run_dirs))
    try:
        session = driver.up()
    except BaseException:
        driver.down()  # remove what a partial bring-up created; the original error propagates
        raise
    if session.facts:
        rows = [{"fact": name, "value": value} for name, value in session.facts.items()]
        contribute_inventory(request.config, f"Link {link.name} ({link.type})", rows)
    try:
        yield session
    finally:
        driver.down()


def _unavailable(reason: str, strict: bool) -> None:
    """Skip the test: the link lacks what it needs (a strict run makes it an error, fabqual.plugin.outcomes)."""
    pytest.skip(reason)


def _capability(link_session: LinkSession, name: str, strict: bool) -> Any:
    handle = link_session.capability(name)
    if handle is None:
        _unavailable(f"link {link_session.link.name} came up without {name}", strict)
    return handle


@pytest.fixture
def nvme_namespace(link_session: LinkSession, fabqual_run: QualificationRun) -> Any:
    """An NVMe namespace exported by a target and connected on a host, over the link."""
    return _capability(link_session, "nvme_namespace", fabqual_run.strict)


@pytest.fixture
def block_device(link_session: LinkSession, fabqual_run: QualificationRun) -> Any:
    """A block device on a host whose storage sits across the link (an NVMe namespace, an FCP LUN)."""
    return _capability(link_session, "block_device", fabqual_run.strict)


@pytest.fixture
def nvme_multipath(link_session: LinkSession, fabqual_run: QualificationRun) -> Any:
    """The link's NVMe namespace reached over several paths, each of which a test may take away."""
    namespace = _capability(link_session, "nvme_namespace", fabqual_run.strict)
    if len(namespace.path_faults) < 2:
        paths = len(namespace.path_faults) or 1
        _unavailable(f"link {link_session.link.name} came up with {paths} path(s), not several", fabqual_run.strict)
    return namespace


@pytest.fixture
def rdma_pair(link_session: LinkSession, fabqual_run: QualificationRun) -> Any:
    """Two RDMA endpoints (server and client) that can reach each other over the link."""
    return _capability(link_session, "rdma_pair", fabqual_run.strict)


@pytest.fixture
def ip_tunnel(link_session: LinkSession, fabqual_run: QualificationRun) -> Any:
    """Two IP endpoints joined by the link's tunnel."""
    return _capability(link_session, "ip_tunnel", fabqual_run.strict)


MetricCheck = Callable[..., Measurement]


@pytest.fixture
def check_metric(request: pytest.FixtureRequest, fabqual_run: QualificationRun) -> MetricCheck:
    """Record a measured value against its threshold; a miss fails the test at its end.

    ``check_metric(link, "iops", 1234.0, context={"bs": "4k"}, line_rate=namespace.line_rate)``.
    Every metric is recorded (also after an earlier one missed), so the report
    shows all numbers of a failing test. A value that is not a number (None: a
    tool left it out or printed nan) fails the test at once: a missing number
    never passes. The parsers' own properties (``bw_gbps``, ``lat_p99_us``...)
    already refuse unknown values with a ParseError naming tool and key; this is
    the net under values passed in directly.
    """

    return partial(record_metric, request.node, fabqual_run)


def record_metric(
    node: pytest.Item,
    run: QualificationRun,
    link: Link,
    metric: str,
    value: float | None,
    *,
    context: dict[str, str] | None = None,
    line_rate: LineRate | float | None = None,
) -> Measurement:
    """What ``check_metric`` does, for a hook that has the item but no fixture request."""
    if value is None or not math.isfinite(value):
        where = ", ".join(f"{key}={val}" for key, val in (context or {}).items())
        pytest.fail(
            f"{link.name}: {metric}{f' ({where})' if where else ''} has no measured value ({value!r}):"
            " the tool did not report it, and a missing number never passes",
            pytrace=False,
        )
    ctx = dict(context or {})
    bound = run.thresholds.bound(link.type, metric, ctx, line_rate=line_rate)
    measurement = Measurement(
        link=link.name,
        link_type=link.type,
        metric=metric,
        value=float(value),
        unit=bound.unit,
        threshold=bound.threshold,
        comparison=bound.comparison,
        context=ctx,
        threshold_source=bound.source,
    )
    node.user_properties.append((USER_PROPERTY, measurement.to_json()))
    if not measurement.passed:
        node.stash.setdefault(FAILED_MEASUREMENTS, []).append(measurement)
    return measurement
