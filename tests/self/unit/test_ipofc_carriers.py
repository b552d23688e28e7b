"""The IPoFC carrier registry: every carrier a topology may name has a module, and nothing else is asked.

The bring-up of each carrier runs in the lab tests (``test_ipofc_live.py`` over
``tcm_loop`` and ``fcoe``; ``test_ipofc_fc.py`` refusing ``fc`` without an HBA);
these check the registry itself, without a node.
"""

from __future__ import annotations

import typing

import pytest
import yaml

from fabqual.drivers.journal import Journal
from fabqual.errors import DriverError
from fabqual.links.base import LinkContext
from fabqual.links.carriers import carrier_for, carrier_names
from fabqual.testing.fake_node import FakeNode
from fabqual.topology import parse_topology
from fabqual.topology.model import IpofcParams


def test_every_carrier_the_topology_accepts_is_registered_and_no_other() -> None:
    """The loader's ``carrier:`` choices and the registered carrier modules are the same set."""
    accepted = set(typing.get_args(typing.get_type_hints(IpofcParams)["carrier"]))
    assert accepted
    assert set(carrier_names()) == accepted


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
