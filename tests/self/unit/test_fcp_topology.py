"""fcp links in a topology: what loads, each mistake as one line naming file, key and value, what the doctor asks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabqual.doctor import requirements_of
from fabqual.errors import TopologyError
from fabqual.lab.topology import lab_topology
from fabqual.linkspec import link_spec
from fabqual.topology import load_topology, parse_topology
from fabqual.topology.model import FcpParams

REPO = Path(__file__).resolve().parents[3]

RACK: dict[str, Any] = {
    "name": "fcp-rack",
    "nodes": [
        {
            "name": "tgt",
            "address": "192.0.2.10",
            "roles": ["fcp_target", "fcp_initiator"],
            "hbas": [
                {"name": "p0", "wwpn": "21:00:00:24:ff:77:99:ab", "driver": "qla2xxx"},
                {"name": "f0", "emulation": "fcoe", "driver": "fcoe", "netdev": "eth1"},
            ],
            "scratch_devices": [{"name": "sas0", "wwid": "naa.5000c500a1b2c3d4"}],
        },
        {
            "name": "ini",
            "address": "192.0.2.11",
            "roles": ["fcp_initiator"],
            "hbas": [
                {"name": "p0", "driver": "qla2xxx"},
                {"name": "f0", "emulation": "fcoe", "driver": "fcoe", "netdev": "eth1"},
            ],
        },
    ],
    "links": [
        {
            "name": "fcp0",
            "type": "fcp",
            "target": {"node": "tgt", "device": "p0"},
            "initiator": {"node": "ini", "device": "p0"},
            "backstore": "sas0",
        }
    ],
}


def with_link(**changes: Any) -> str:
    data = copy.deepcopy(RACK)
    data["links"][0].update(changes)
    return yaml.safe_dump(data, sort_keys=False)


def test_an_fcp_link_loads_with_its_defaults() -> None:
    """Carrier fc, the kernel's own queue limits (None) and a 10 s fio runtime unless the link says otherwise."""
    (link,) = parse_topology(with_link(), "rack.yaml").links_of("fcp")
    assert link.params == FcpParams(backstore="sas0")
    assert link.params.carrier == "fc" and link.params.max_sectors_kb is None and link.params.queue_depth is None
    assert link_spec("fcp").offers(link, "block_device") and not link_spec("fcp").offers(link, "nvme_namespace")


def test_queue_limits_and_fcoe_load() -> None:
    (link,) = parse_topology(
        with_link(
            carrier="fcoe",
            target={"node": "tgt", "device": "f0"},
            initiator={"node": "ini", "device": "f0"},
            max_sectors_kb=64,
            queue_depth=4,
        ),
        "rack.yaml",
    ).links_of("fcp")
    assert isinstance(link.params, FcpParams)
    assert (link.params.carrier, link.params.max_sectors_kb, link.params.queue_depth) == ("fcoe", 64, 4)


@pytest.mark.parametrize(
    "changes,expected",
    [
        (
            {"backstore": "ssd9"},
            "rack.yaml: links.fcp0.backstore: node 'tgt' has no scratch device named 'ssd9';"
            " only scratch devices are ever exported",
        ),
        ({"backstore": "sas0; reboot"}, "rack.yaml: links.fcp0.backstore: a name starts with a letter"),
        ({"carrier": "tcm_loop"}, "rack.yaml: links.fcp0.carrier: 'tcm_loop' is not one of 'fc', 'fcoe'"),
        ({"max_sectors_kb": 0}, "rack.yaml: links.fcp0.max_sectors_kb: must be greater than zero (got 0)"),
        ({"queue_depth": "deep"}, "rack.yaml: links.fcp0.queue_depth: expected an integer, got 'deep'"),
        ({"queue_depth": -4}, "rack.yaml: links.fcp0.queue_depth: must be greater than zero (got -4)"),
        ({"lun": 3}, "rack.yaml: links.fcp0.lun: unknown key (known keys: backstore, carrier,"),
        (
            {"target": {"node": "tgt", "device": "sas0"}},
            "rack.yaml: links.fcp0.target.device: node 'tgt' has no HBA named 'sas0' (it has: f0, p0)",
        ),
        (
            {"initiator": {"node": "tgt", "device": "p0"}},
            "rack.yaml: links.fcp0.initiator.node: target and initiator are both 'tgt'",
        ),
        (
            {"target": {"node": "tgt", "device": "f0"}},
            "rack.yaml: links.fcp0.carrier: carrier fc needs real HBAs, but tgt's f0 is emulated (fcoe);",
        ),
        (
            {"carrier": "fcoe"},
            "rack.yaml: links.fcp0.target.device: carrier fcoe needs the Ethernet interface of tgt's HBA p0;",
        ),
    ],
)
def test_each_mistake_is_one_line(changes: dict[str, Any], expected: str) -> None:
    """An unknown or non-scratch backstore, a carrier fcp has no use for, a zero or non-numeric queue limit,
    one node for both ends, an HBA that does not fit the carrier: one line, before any node is touched."""
    with pytest.raises(TopologyError) as caught:
        parse_topology(with_link(**changes), "rack.yaml")
    message = str(caught.value)
    assert message.startswith(expected) and "\n" not in message, message


def test_the_doctor_asks_for_lio_iblock_target_mode_and_the_disk_driver() -> None:
    """Target: configfs, target_core_iblock, tcm_qla2xxx, qla2xxx in target mode, the scratch proof;
    initiator: sd_mod and fio; both: the HBA's driver and an Online port."""
    needs = requirements_of(parse_topology(with_link(), "rack.yaml"))
    tgt = {(r.kind, r.name) for r in needs["tgt"]}
    ini = {(r.kind, r.name) for r in needs["ini"]}
    assert {
        ("configfs", "/sys/kernel/config"),
        ("module", "target_core_iblock"),
        ("module", "tcm_qla2xxx"),
        ("target_mode", "qla2xxx"),
        ("scratch", "sas0"),
        ("module", "qla2xxx"),
        ("fc_link", "p0"),
    } <= tgt
    assert {("module", "sd_mod"), ("tool", "fio"), ("module", "qla2xxx"), ("fc_link", "p0")} <= ini
    assert ("target_mode", "qla2xxx") not in ini


def test_over_fcoe_the_doctor_asks_for_tcm_fc_and_fcoe() -> None:
    topology = parse_topology(
        with_link(carrier="fcoe", target={"node": "tgt", "device": "f0"}, initiator={"node": "ini", "device": "f0"}),
        "rack.yaml",
    )
    needs = requirements_of(topology)
    tgt = {(r.kind, r.name) for r in needs["tgt"]}
    assert {("module", "tcm_fc"), ("module", "fcoe"), ("module", "target_core_iblock")} <= tgt
    assert ("target_mode", "qla2xxx") not in tgt and ("module", "fcoe") in {(r.kind, r.name) for r in needs["ini"]}


def test_the_example_rack_and_the_lab_have_an_fcp_link() -> None:
    """The example rack exports a SAS scratch device over the target-mode port; the lab over FCoE with
    the queue limits tcm_fc needs and a scratch null_blk of its own."""
    (rack,) = load_topology(REPO / "topologies" / "example-rack.yaml").links_of("fcp")
    assert isinstance(rack.params, FcpParams) and rack.params.carrier == "fc"
    data = lab_topology({"tgt": 2201, "ini": 2202}, Path("/k"), Path("/kh"))
    (lab,) = [link for link in data["links"] if link["type"] == "fcp"]
    assert (lab["carrier"], lab["max_sectors_kb"], lab["queue_depth"]) == ("fcoe", 64, 4)
    exported = {ns for link in data["links"] for ns in link.get("namespaces", [])}
    assert lab["backstore"] not in exported
