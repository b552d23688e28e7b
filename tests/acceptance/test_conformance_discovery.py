"""Conformance, Discovery: the discovery log follows the target's configuration.

Each case makes its own subsystems (``nqn.2024-01.io.fabqual:conf-*``, no
namespaces) and ports on the link's kernel nvmet target, reads the discovery
log from the link's host over the link's own path, and removes what it made
when it ends (the case's journal; a killed run's sweep replays it). blktests
nvme/002, 016, 017 and 030 check the same counter on loop and tcp; here it is
every link offering an NVMe namespace.
"""

from __future__ import annotations

import pytest

from fabqual.conformance.fabric import NvmeFabric
from fabqual.drivers.nvme_discovery import DiscoveryLog, read_discovery_log
from fabqual.drivers.nvmet import PortAddress
from fabqual.errors import DriverError
from fabqual.plugin.conformance import ConformanceCase
from fabqual.topology.model import Link

# A second port on an IP transport listens on the link's address at this service id.
SECOND_TRSVCID = "4431"


def _log(fabric: NvmeFabric, **where: str) -> DiscoveryLog:
    return read_discovery_log(fabric.nvme, fabric.spec(fabric.subsystem_nqn, **where))


def _moved(before: DiscoveryLog, after: DiscoveryLog, what: str) -> None:
    assert after.genctr > before.genctr, (
        f"the discovery log's generation counter stayed {before.genctr} -> {after.genctr} when {what}"
    )


@pytest.mark.conformance(case="discovery.generation_counter", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_generation_counter_follows_subsystems(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """A subsystem exported on the link's port enters its discovery log and GENCTR moves; removed, both again."""
    nqn = nvme_fabric.nqn("genctr")
    nvmet = nvme_fabric.nvmet
    nvmet.remove_stale(nqn)
    start = _log(nvme_fabric)
    assert nqn not in start.subsystems()
    nvmet.create_subsystem(nqn, allow_any_host=True)
    nvmet.link_port(nvme_fabric.port_id, nqn)
    added = _log(nvme_fabric)
    assert nqn in added.subsystems(), f"{nqn} exported on port {nvme_fabric.port_id} but not in the log: {added}"
    _moved(start, added, f"{nqn} was exported on port {nvme_fabric.port_id}")
    nvmet.unlink_port(nvme_fabric.port_id, nqn)
    removed = _log(nvme_fabric)
    assert nqn not in removed.subsystems(), f"{nqn} no longer exported but still in the log: {removed}"
    _moved(added, removed, f"{nqn} stopped being exported on port {nvme_fabric.port_id}")


@pytest.mark.conformance(case="discovery.generation_counter_port", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_generation_counter_follows_ports(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """A second port exporting a subsystem moves the counter the link's port shows, and its own log offers it."""
    nqn = nvme_fabric.nqn("genctr-port")
    nvmet, path = nvme_fabric.nvmet, nvme_fabric.path
    nvmet.remove_stale(nqn)
    nvmet.create_subsystem(nqn, allow_any_host=True)
    second = path.trsvcid and SECOND_TRSVCID
    port = nvmet.create_port(PortAddress(path.trtype, path.traddr, second or ""))
    start = _log(nvme_fabric)
    try:
        nvmet.link_port(port, nqn)  # the kernel enables the port with its first subsystem
    except DriverError as error:
        why = str(error).rsplit(": ", 1)[-1]  # the kernel's reason, e.g. "Operation already in progress"
        pytest.skip(f"{nvme_fabric.target.node}: nvmet-{path.trtype} refused a second port on {path.traddr} ({why})")
    added = _log(nvme_fabric)
    _moved(start, added, f"port {port} ({path.trtype} {path.traddr} {second}) started exporting {nqn}")
    if second:
        assert nqn in _log(nvme_fabric, trsvcid=second).subsystems(), f"the new port's log does not offer {nqn}"
    nvmet.unlink_port(port, nqn)
    removed = _log(nvme_fabric)
    _moved(added, removed, f"port {port} stopped exporting {nqn}")
