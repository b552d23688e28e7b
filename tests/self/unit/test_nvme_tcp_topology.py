"""nvme_tcp links in a topology: what loads, and each mistake as one line naming file, key and value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabqual.doctor import requirements_of
from fabqual.errors import TopologyError
from fabqual.linkspec import link_spec
from fabqual.topology import load_topology, parse_topology
from fabqual.topology.model import NvmeTcpParams

REPO = Path(__file__).resolve().parents[3]

RACK: dict[str, Any] = {
    "name": "tcp-rack",
    "nodes": [
        {
            "name": "tgt",
            "address": "192.0.2.10",
            "roles": ["nvme_target"],
            "nvme_target": {"backend": "kernel"},
            "nics": [
                {"name": "e0", "netdev": "ens1f0", "driver": "ice", "address": "192.168.60.1/24"},
                {"name": "e1", "netdev": "ens1f1", "driver": "ice", "address": "192.168.61.1/24"},
            ],
            "rnics": [{"name": "r0", "address": "192.168.50.1/24"}],
            "scratch_devices": [{"name": "ssd0", "serial": "S4EWNX0N123456A"}],
        },
        {
            "name": "ini",
            "address": "192.0.2.11",
            "roles": ["nvme_host"],
            "nics": [
                {"name": "e0", "address": "192.168.60.2/24"},
                {"name": "e1", "address": "192.168.61.2/24"},
            ],
        },
    ],
    "links": [
        {
            "name": "tcp0",
            "type": "nvme_tcp",
            "target": {"node": "tgt", "device": "e0"},
            "host": {"node": "ini", "device": "e0"},
            "namespaces": ["ssd0"],
            "extra_paths": [{"target": "e1", "host": "e1"}],
        }
    ],
}


def with_link(**changes: Any) -> str:
    data = copy.deepcopy(RACK)
    data["links"][0].update(changes)
    return yaml.safe_dump(data, sort_keys=False)


def test_a_tcp_link_loads_with_its_paths_and_defaults() -> None:
    """Both NICs, the extra path and the params' defaults (port 4420, the fabqual NQN) come through."""
    topology = parse_topology(with_link(), "rack.yaml")
    (link,) = topology.links_of("nvme_tcp")
    assert isinstance(link.params, NvmeTcpParams)
    assert link.params.trsvcid == 4420 and link.params.subsystem_nqn == "nqn.2024-01.io.fabqual:nvme-tcp"
    assert [(p.target, p.host, p.trsvcid) for p in link.params.extra_paths] == [("e1", "e1", 4421)]
    assert link_spec("nvme_tcp").offers(link, "nvme_multipath")
    assert topology.node("tgt").nic("e0").netdev == "ens1f0" and topology.node("ini").nic("e0").netdev == "discover"


@pytest.mark.parametrize(
    "changes,expected",
    [
        (
            {"target": {"node": "tgt", "device": "r0"}},
            "rack.yaml: links.tcp0.target.device: node 'tgt' has no NIC named 'r0' (it has: e0, e1)",
        ),
        ({"target": {"node": "tgt"}}, "rack.yaml: links.tcp0.target.device: required: the NIC of node 'tgt'"),
        (
            {"extra_paths": [{"target": "e9"}]},
            "rack.yaml: links.tcp0.extra_paths[0].target: node 'tgt' has no NIC named 'e9' (it has: e0, e1)",
        ),
        (
            {"extra_paths": [{"trsvcid": 4420}]},
            "rack.yaml: links.tcp0.extra_paths[0]: NIC 'e0' port 4420 is already the link's own path",
        ),
        ({"namespaces": ["ssd9"]}, "rack.yaml: links.tcp0.namespaces[0]: node 'tgt' has no scratch device named"),
        ({"trsvcid": 0}, "rack.yaml: links.tcp0.trsvcid: a TCP port is between 1 and 65535 (got 0)"),
        ({"subsystem_nqn": "nqn.x;reboot"}, "rack.yaml: links.tcp0.subsystem_nqn: "),
    ],
)
def test_each_mistake_is_one_line(changes: dict[str, Any], expected: str) -> None:
    """A wrong device kind, an unknown NIC, a port used twice, an unsafe NQN: one line, before any node."""
    with pytest.raises(TopologyError) as caught:
        parse_topology(with_link(**changes), "rack.yaml")
    message = str(caught.value)
    assert message.startswith(expected) and "\n" not in message, message


def test_a_bad_nic_address_is_one_line() -> None:
    """A NIC's address is checked as an address with prefix (it reaches `ip addr` and nvme-cli)."""
    data = copy.deepcopy(RACK)
    data["nodes"][1]["nics"][0]["address"] = "192.168.60.2; reboot"
    with pytest.raises(TopologyError, match=r"^rack.yaml: nodes\[1\].nics\[0\].address: "):
        parse_topology(yaml.safe_dump(data), "rack.yaml")


def test_the_doctor_asks_for_the_tcp_modules_and_tools() -> None:
    """Target: nvmet + nvmet-tcp, configfs, the NIC's driver and the scratch proofs; host: nvme-tcp, nvme, fio."""
    needs = requirements_of(parse_topology(with_link(), "rack.yaml"))
    tgt = {(r.kind, r.name) for r in needs["tgt"]}
    ini = {(r.kind, r.name) for r in needs["ini"]}
    assert {("module", "nvmet"), ("module", "nvmet-tcp"), ("module", "ice"), ("configfs", "/sys/kernel/config")} <= tgt
    assert ("scratch", "ssd0") in tgt
    assert ini == {("module", "nvme-tcp"), ("tool", "nvme"), ("tool", "fio")}


def test_the_example_rack_has_a_tcp_link() -> None:
    """The shipped example rack declares NVMe/TCP on the RoCE card's second port."""
    (link,) = load_topology(REPO / "topologies" / "example-rack.yaml").links_of("nvme_tcp")
    assert link.end("target").device == "e1"
