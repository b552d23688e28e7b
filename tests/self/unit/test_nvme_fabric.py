"""The bring-up the NVMe-oF links share (links/nvme_fabric.py), on the emulated lab's own topology.

Each link type is brought up and down on fake nodes (fabqual.testing.fake_node:
commands recorded, nvmet configfs and nvme-cli answered), so what the shared
steps promise every transport is checked without a VM: one shape of facts, a
handle of the link's own transport, a path fault per path with multipath, and
nothing left exported or connected after ``down()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fabqual.drivers import rundir
from fabqual.errors import DriverError
from fabqual.lab.topology import lab_topology
from fabqual.links.base import LinkContext, LinkSession, driver_for
from fabqual.testing.fake_node import FakeNode
from fabqual.topology.load import parse_topology
from fabqual.topology.model import Topology

REPO = Path(__file__).resolve().parents[3]
# A real scratch-safety probe of a fresh null_blk on the lab's tgt guest (see its .origin file).
CLEAN_PROBE = (REPO / "fixtures" / "outputs" / "blockdev" / "clean_nullb.txt").read_text()
# link → (trtype, the transport's own facts, paths)
LINKS = {
    "fc0": ("fc", ["target_wwpn", "host_wwpn", "emulation"], 1),
    "roce0": ("rdma", ["server", "client", "active_mtu", "paths"], 2),
    "tcp0": ("tcp", ["target", "host"], 2),
}


@pytest.fixture(scope="module")
def topology() -> Topology:
    data = lab_topology({"tgt": 2201, "ini": 2202}, Path("/nonexistent/key"), Path("/nonexistent/known_hosts"))
    return parse_topology(yaml.safe_dump(data), "lab.yaml")


@pytest.fixture
def nodes(topology: Topology) -> Iterator[dict[str, FakeNode]]:
    """Fake tgt and ini sharing one fabric, in a run directory of their own (never a real lab node's)."""
    fabric: set[str] = set()
    rundir.activate(rundir.RunDirs())
    try:
        yield {n.name: FakeNode(n.name, exported=fabric, probe_output=CLEAN_PROBE) for n in topology.nodes}
    finally:
        rundir.activate(None)


def _up_and_down(topology: Topology, nodes: dict[str, FakeNode], name: str) -> LinkSession:
    link = next(link for link in topology.links if link.name == name)
    driver = driver_for(LinkContext(topology, link, nodes.__getitem__))
    try:
        return driver.up()
    finally:
        driver.down()


@pytest.mark.parametrize("name", sorted(LINKS))
def test_every_transport_hands_over_the_same_shape(topology: Topology, nodes: dict[str, FakeNode], name: str) -> None:
    """Facts: the target backend, the transport's own, the host NQN, the line rate, each scratch verdict;
    the namespace handle is of the link's transport, and carries one path fault per path when there are
    several (none with one path)."""
    trtype, own_facts, paths = LINKS[name]
    session = _up_and_down(topology, nodes, name)
    namespace = session.nvme_namespace
    assert namespace is not None
    scratch = [key for key in session.facts if key.startswith("scratch ")]
    assert list(session.facts) == ["target_backend", *own_facts, "hostnqn", "line_rate", *scratch]
    assert len(scratch) == 1 and session.facts["target_backend"] == "kernel"
    assert namespace.facts == session.facts and namespace.scratch
    assert namespace.transport == trtype and namespace.subsystem_nqn.startswith("nqn.2024-01.io.fabqual:")
    assert namespace.device == "/dev/nvme1n1" and len(namespace.controllers) == paths
    assert namespace.fault is not None
    assert len(namespace.path_faults) == (paths if paths > 1 else 0)
    assert all(f.path_address.startswith("traddr=") for f in namespace.path_faults)


@pytest.mark.parametrize("name", sorted(LINKS))
def test_down_leaves_nothing_exported_or_connected(topology: Topology, nodes: dict[str, FakeNode], name: str) -> None:
    """The journal the shared steps write is undone: the subsystem is gone from the target's configfs and
    the host disconnected it."""
    session = _up_and_down(topology, nodes, name)
    nqn = session.nvme_namespace.subsystem_nqn if session.nvme_namespace else ""
    assert not nodes["tgt"].exported
    assert not any(nqn in d for d in nodes["tgt"].dirs)
    assert all(not node.connected for node in nodes.values())
    assert any(c == f"nvme disconnect -n {nqn}" for node in nodes.values() for c in node.commands)


@pytest.mark.parametrize("name", sorted(LINKS))
def test_params_of_another_link_type_are_refused_in_one_line(topology: Topology, name: str) -> None:
    link = next(link for link in topology.links if link.name == name)
    wrong = dataclasses.replace(link, params=object())
    with pytest.raises(DriverError, match=rf"^link {name}: {link.type} link without {link.type} params$"):
        driver_for(LinkContext(topology, wrong, lambda node: FakeNode(node)))
