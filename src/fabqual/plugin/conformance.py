"""Conformance cases in pytest: the ``conformance`` marker, the ``conformance`` and ``nvme_fabric`` fixtures.

A case is a test marked ``@pytest.mark.conformance(case=..., category=...)``
(shape and rules: :mod:`fabqual.conformance`). The ``conformance`` fixture
looks the case up in the thresholds profile, records the row for the report's
conformance table (a ``fabqual_conformance`` user property) and checks the
times the case measures; ``nvme_fabric`` hands it the link's target and host
with a journal undone when the case ends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fabqual.conformance.fabric import NvmeFabric, connected_path, exporting_port
from fabqual.conformance.policy import CasePolicy, check_case_name
from fabqual.conformance.snapshot import nvme_state
from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import NvmeHost
from fabqual.drivers.nvmet import NvmetTarget
from fabqual.errors import DriverError, FabqualError
from fabqual.links.base import LinkSession
from fabqual.measure import USER_PROPERTY, Measurement
from fabqual.plugin.keys import FAILED_MEASUREMENTS
from fabqual.plugin.run import QualificationRun

MARKER = "conformance"
CASE_PROPERTY = "fabqual_conformance"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(case, category): an NVMe-oF conformance case (<category>.<name>); its level comes from the profile",
    )


def case_of(item: pytest.Item) -> tuple[str, str] | None:
    """(case, category) from the item's conformance marker; None for an ordinary test.

    A marker that is malformed (no case, a category that does not name the
    case's prefix) is a usage error naming the test.
    """
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    case, category = marker.kwargs.get("case"), marker.kwargs.get("category")
    if not isinstance(case, str):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}: case=... is missing")
    if not isinstance(category, str) or not category.strip():
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}: category=... is missing")
    problem = check_case_name(case)
    prefix = case.split(".")[0]
    if not problem and category.strip().lower().replace(" ", "_") != prefix:
        problem = f"category {category!r} does not name the case's prefix {prefix!r}"
    if problem:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}: {problem}")
    return case, category.strip()


@dataclass
class ConformanceCase:
    """One case on one link: its policy, and the times it measured (checked against the profile)."""

    case: str
    category: str
    policy: CasePolicy
    link_name: str
    link_type: str
    node: pytest.Item = field(repr=False)

    @property
    def mandatory(self) -> bool:
        return self.policy.mandatory

    def time(self, name: str, seconds: float, context: dict[str, str] | None = None) -> Measurement:
        """Record a measured time against the profile's bound; a miss fails the case at its end."""
        bound = self.policy.times.get(name)
        if bound is None:
            raise FabqualError(
                f"conformance case {self.case} measured {name} but {self.policy.where} has no"
                f" times.{name}; add {{max: seconds, note: ...}} there"
            )
        if not math.isfinite(seconds):
            pytest.fail(f"{self.link_name}: {self.case} {name} has no measured value ({seconds!r})", pytrace=False)
        measurement = Measurement(
            link=self.link_name,
            link_type=self.link_type,
            metric=name,
            value=float(seconds),
            unit="s",
            threshold=bound.maximum,
            comparison="<=",
            context={"case": self.case, **(context or {})},
            threshold_source=f"{bound.where}: {bound.note}",
        )
        self.node.user_properties.append((USER_PROPERTY, measurement.to_json()))
        if not measurement.passed:
            self.node.stash.setdefault(FAILED_MEASUREMENTS, []).append(measurement)
        return measurement


@pytest.fixture
def conformance(request: pytest.FixtureRequest, fabqual_run: QualificationRun, link: Any) -> ConformanceCase:
    """The running case: its level from the profile, and ``time(name, seconds)`` for what it measures."""
    found = case_of(request.node)
    if found is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses the conformance fixture without @pytest.mark.{MARKER}")
    case, category = found
    policy = fabqual_run.thresholds.case_policy(case)
    row = {"case": case, "category": category, "level": policy.level, "note": policy.note}
    request.node.user_properties.append((CASE_PROPERTY, json.dumps(row, sort_keys=True)))
    return ConformanceCase(case, category, policy, getattr(link, "name", ""), getattr(link, "type", ""), request.node)


@pytest.fixture
def nvme_fabric(link_session: LinkSession, fabqual_run: QualificationRun) -> Iterator[NvmeFabric]:
    """The link's kernel nvmet target and its host; what the case creates is removed when it ends, and the
    nodes' NVMe-oF state (host controllers, nvmet objects) must then equal what it was before the case."""
    namespace = link_session.nvme_namespace
    if namespace is None:
        pytest.skip(f"link {link_session.link.name} came up without nvme_namespace")
    backend = namespace.facts.get("target_backend", "kernel")
    if backend != "kernel":
        pytest.skip(f"link {link_session.link.name}: target backend {backend}; these cases drive kernel nvmet configfs")
    journal = Journal(fabqual_run.run_dirs)
    host = namespace.host
    target = fabqual_run.executor(namespace.target_node)
    nvme = NvmeHost(host, journal)
    path = connected_path(nvme, namespace.subsystem_nqn)
    fabric = NvmeFabric(
        link=link_session.link,
        target=target,
        host=host,
        journal=journal,
        nvmet=NvmetTarget(target, journal, scratch_paths=()),
        nvme=nvme,
        subsystem_nqn=namespace.subsystem_nqn,
        path=path,
        port_id=exporting_port(target, namespace.subsystem_nqn, path),
        hostnqn=nvme.hostnqn(),
    )
    before = nvme_state(host, target)
    try:
        yield fabric
    finally:
        journal.undo_all()  # an error here fails the case's teardown: the nodes were not left as found
    left = before.difference(nvme_state(host, target))
    if left:
        raise DriverError(f"conformance case on {link_session.link.name} left the nodes changed: {left}")
