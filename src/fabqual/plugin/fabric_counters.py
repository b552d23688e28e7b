"""Every row on a link that keeps fabric counters: its ports' counters before and after, the error rises checked.

For a row on a link type that declares the ``fabric_errors`` metric (FC-NVMe,
NVMe/RDMA, pvrdma), the counters of every port the link crosses are read just
before the test body and just after it (the RDMA pair's two ports; the FC
ports of the target and host WWPNs). Each error counter's rise is a
``fabric_errors`` measurement (context: port, counter) checked against the
profile, so a row whose fabric logged more errors than its bound fails, and
the report lists them beside the row's throughput. The traffic counters'
rises are recorded as a user property, for the report's raw data. A port that
keeps no counters is named with the probed reason (``fabqual_fabric_counters``
property and the log), never counted as zeros.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from fabqual.drivers.fabric_counters import CounterSource, NoCounters, fc_sources, rdma_sources, read_counters
from fabqual.executors.base import log_step
from fabqual.links.base import LinkSession
from fabqual.linkspec import link_spec
from fabqual.plugin.fixtures import record_metric
from fabqual.plugin.keys import RUN
from fabqual.plugin.run import QualificationRun
from fabqual.tools.fabric_counters import SPEC, CounterSet, is_error_counter, rises
from fabqual.topology.model import Link

METRIC = SPEC.metric_names[0]
PROPERTY = "fabqual_fabric_counters"


def sources_of(session: LinkSession, run: QualificationRun) -> tuple[list[CounterSource], list[NoCounters]]:
    """The counter sets of every port the session's link crosses, and the ports without any."""
    found: list[CounterSource] = []
    missing: list[NoCounters] = []
    probes: list[list[CounterSource] | NoCounters] = []
    if session.rdma_pair is not None:
        for end in (session.rdma_pair.server, session.rdma_pair.client):
            probes.append(rdma_sources(end.executor, end.device, end.port))
    namespace = session.nvme_namespace
    if namespace is not None and namespace.transport == "fc":
        target = run.executor(namespace.target_node)
        for executor, fact in ((target, "target_wwpn"), (namespace.host, "host_wwpn")):
            wwpn = namespace.facts.get(fact, "")
            if wwpn:
                probes.append(fc_sources(executor, wwpn))
    for probe in probes:
        if isinstance(probe, NoCounters):
            missing.append(probe)
        else:
            found.extend(probe)
    return found, missing


def _row_link(item: pytest.Item) -> tuple[Link, LinkSession] | None:
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    link, session = funcargs.get("link"), funcargs.get("link_session")
    if not isinstance(link, Link) or not isinstance(session, LinkSession):
        return None
    if METRIC not in link_spec(link.type).metrics:
        return None
    return link, session


@pytest.hookimpl(wrapper=True, trylast=True)  # inside fabqual's own call wrapper, which fails on recorded misses
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    row = _row_link(item)
    if row is None:
        return (yield)
    link, session = row
    run: QualificationRun = item.config.stash[RUN]
    sources, missing = sources_of(session, run)
    for port in missing:
        log_step(port.port.split()[0], f"no fabric counters for {port.port}: {port.reason}")
    before = read_counters(sources) if sources else []
    try:
        result = yield
    except BaseException:
        try:  # the row failed already: its counters still go into the report, its own error stays the error
            _after(item, run, link, sources, missing, before)
        except Exception as error:  # a node lost by the row's own failure
            log_step(link.name, f"fabric counters not read after the failed row: {error}")
        raise
    _after(item, run, link, sources, missing, before)
    return result


def _after(
    item: pytest.Item,
    run: QualificationRun,
    link: Link,
    sources: list[CounterSource],
    missing: list[NoCounters],
    before: list[CounterSet],
) -> None:
    after = read_counters(sources) if sources else []
    traffic = _record(item, run, link, before, after)
    item.user_properties.append(
        (PROPERTY, json.dumps({"traffic": traffic, "unavailable": {p.port: p.reason for p in missing}}))
    )


def _record(
    item: pytest.Item, run: QualificationRun, link: Link, before: list[CounterSet], after: list[CounterSet]
) -> dict[str, dict[str, int]]:
    """Check each error counter's rise; the traffic counters' rises, by port."""
    traffic: dict[str, dict[str, int]] = {}
    for first, last in zip(before, after, strict=True):
        for name, rise in sorted(rises(first, last).items()):
            if is_error_counter(name):
                record_metric(item, run, link, METRIC, float(rise), context={"port": first.port, "counter": name})
            else:
                traffic.setdefault(first.port, {})[name] = rise
    return traffic
