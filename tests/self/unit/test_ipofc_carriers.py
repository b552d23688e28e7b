"""The IPoFC carrier registry: every carrier a topology may name has a module, and nothing else is asked.

The bring-up of each carrier runs in the lab tests (``test_ipofc_live.py`` over
``tcm_loop`` and ``fcoe``; ``test_ipofc_fc.py`` refusing ``fc`` without an HBA);
these check the registry itself, without a node.
"""

from __future__ import annotations

import pytest
import yaml

from fabqual.drivers.journal import Journal
from fabqual.errors import DriverError, TopologyError
from fabqual.links.base import LinkContext
from fabqual.links.carriers import carrier_for, carrier_names
from fabqual.links.carriers.base import carrier_needs
from fabqual.testing.fake_node import FakeNode
from fabqual.topology import parse_topology
from fabqual.topology.model import IpofcParams

RACK = {
    "name": "carriers",
    "emulated": True,
    "nodes": [
        {
            "name": name,
            "address": "127.0.0.1",
            "user": "root",
            "roles": ["ipofc_end"],
            "hbas": [{"name": "fcoe0", "driver": "fcoe", "emulation": "fcoe", "netdev": "eth1"}],
        }
        for name in ("tgt", "ini")
    ],
    "links": [
        {
            "name": "tunnel",
            "type": "ipofc",
            "emulated": True,
            "target": {"node": "tgt", "device": "fcoe0"},
            "initiator": {"node": "ini", "device": "fcoe0"},
            "carrier": "fcoe",
        }
    ],
}


@pytest.fixture
def context() -> LinkContext:
    topology = parse_topology(yaml.safe_dump(RACK), "carriers.yaml")
    nodes = {n.name: FakeNode(n.name) for n in topology.nodes}
    return LinkContext(topology, topology.links[0], nodes.__getitem__)


def test_the_loader_accepts_exactly_the_registered_carriers() -> None:
    """``carrier:`` is checked against the registry when the file loads: one line listing the registered ones."""
    assert set(carrier_names()) >= {"fc", "fcoe", "tcm_loop"}
    for name in carrier_names():
        rack = {**RACK, "links": [{**RACK["links"][0], "carrier": name}]}
        link = parse_topology(yaml.safe_dump(rack), "carriers.yaml").links[0]
        assert isinstance(link.params, IpofcParams) and link.params.carrier == name
    rack = {**RACK, "links": [{**RACK["links"][0], "carrier": "infiniband"}]}
    with pytest.raises(TopologyError) as caught:
        parse_topology(yaml.safe_dump(rack), "carriers.yaml")
    assert str(caught.value) == (
        "carriers.yaml: links.tunnel.carrier: not one of fc, fcoe, tcm_loop (the registered IPoFC carriers)"
        " (got 'infiniband')"
    )


@pytest.mark.parametrize(
    ("carrier", "target", "initiator"),
    [
        ("fc", {"tcm_qla2xxx", "target_mode qla2xxx"}, set()),
        ("fcoe", {"tcm_fc", "fcoe"}, {"fcoe"}),
        ("tcm_loop", {"tcm_loop"}, set()),
    ],
)
def test_the_carrier_says_what_each_end_needs(carrier: str, target: set[str], initiator: set[str]) -> None:
    """The doctor's carrier-specific needs come from the carrier module (its fabric module on the target only)."""
    node = parse_topology(yaml.safe_dump(RACK), "carriers.yaml").node("tgt")

    def names(role: str) -> set[str]:
        needs = carrier_needs(carrier, node, "fcoe0", role)
        return {need.name if need.kind == "module" else f"{need.kind} {need.name}" for need in needs}

    assert (names("target"), names("initiator")) == (target, initiator)


def test_an_unknown_carrier_is_one_line_naming_the_known_ones(context: LinkContext) -> None:
    with pytest.raises(DriverError) as caught:
        carrier_for("infiniband", context, Journal())
    assert str(caught.value) == (
        "link tunnel: carrier 'infiniband' is not supported by this driver; use one of fc, fcoe, tcm_loop"
    )


def test_a_carrier_resolves_its_ends_without_touching_a_node(context: LinkContext) -> None:
    """``fcoe`` finds both nodes and netdevs from the topology alone: no command is sent before export."""
    ends = carrier_for("fcoe", context, Journal()).ends()
    assert (ends.target.node, ends.initiator.node) == ("tgt", "ini")
    assert ends.target_run is ends.target
    assert isinstance(ends.target, FakeNode) and ends.target.commands == []
