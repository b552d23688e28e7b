"""IPoFC ``carrier: fc`` (LIO tcm_qla2xxx on QLogic HBAs) without an HBA and without the lab.

The HBA port resolver (``fc_host.pick_port``) on fc_host dumps captured in the
emulated lab (fixtures/outputs/fcoe, origin in its README), and what the doctor
asks of each node of a rack with QLogic ports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.doctor import Requirement
from fabqual.drivers.fc_host import FcHostPort, parse_fc_hosts, parse_qlini_mode, pick_port
from fabqual.errors import LabError
from fabqual.topology import parse_topology
from fabqual.topology.model import Hba

CAPTURES = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "fcoe"  # origin: README.md there
ONLINE = "fc_host_ini.txt"  # host0 0x2000525400770002 Online
LINKDOWN = "fc_host_ini_linkdown.txt"  # the same port before its controller was enabled
NO_PORT = "21:00:00:24:ff:00:00:01"  # a QLogic-style WWPN no port here owns


def ports(name: str) -> list[FcHostPort]:
    return parse_fc_hosts((CAPTURES / name).read_text())


# --- pure: the HBA port resolver -------------------------------------------------------------


@pytest.mark.parametrize("wwpn", ["0x2000525400770002", "20:00:52:54:00:77:00:02", "0x2000525400770002".upper()])
def test_declared_wwpn_in_any_spelling_finds_its_port(wwpn: str) -> None:
    """A declared WWPN matches the fc_host port whatever spelling the topology uses."""
    port = pick_port(ports(ONLINE), Hba(name="qla0", wwpn=wwpn), "ini")
    assert (port.host, port.wwpn) == ("host0", "0x2000525400770002")


def test_discover_takes_the_one_online_port() -> None:
    assert pick_port(ports(ONLINE), Hba(name="qla0"), "ini").host == "host0"


def test_declared_wwpn_not_in_sysfs_names_it_and_what_is_there() -> None:
    with pytest.raises(LabError) as error:
        pick_port(ports(ONLINE), Hba(name="qla0", wwpn=NO_PORT), "tgt")
    assert str(error.value) == (
        "tgt: HBA qla0 WWPN 0x21000024ff000001 not in /sys/class/fc_host (seen: 0x2000525400770002)"
    )


def test_node_without_fc_host_says_none_seen() -> None:
    """A guest without any FC port dumps nothing (as the lab guests boot)."""
    with pytest.raises(LabError, match=r"not in /sys/class/fc_host \(seen: none\)"):
        pick_port(parse_fc_hosts(""), Hba(name="qla0", wwpn=NO_PORT), "tgt")


def test_declared_port_that_is_down_is_refused_with_its_state() -> None:
    with pytest.raises(LabError, match=r"FC port host0 \(0x2000525400770002\) is Linkdown, not Online"):
        pick_port(ports(LINKDOWN), Hba(name="qla0", wwpn="0x2000525400770002"), "ini")


def test_discover_without_an_online_port_asks_for_the_wwpn() -> None:
    with pytest.raises(LabError, match="wwpn: discover but 0 fc_host ports are Online"):
        pick_port(ports(LINKDOWN), Hba(name="qla0"), "ini")


def test_qlini_mode_reads_the_module_parameter_and_a_hosts_attribute() -> None:
    """The module parameter as the lab guest prints it, and a host's attribute in the format of
    qla_attr.c's qlini_mode_show (no QLogic host here to capture one from)."""
    assert parse_qlini_mode("enabled\n") == "enabled"
    host_attribute = "Supported options: enabled | disabled | dual | exclusive\nCurrent selection: disabled\n"
    assert parse_qlini_mode(host_attribute) == "disabled"


# --- on the running lab ----------------------------------------------------------------------


QLA_RACK = """
name: qla-rack
nodes:
  - name: a
    address: local
    roles: [ipofc_end]
    hbas: [{name: qla0, wwpn: "21:00:00:24:ff:00:00:01"}]
  - name: b
    address: local
    roles: [ipofc_end]
    hbas: [{name: qla0, wwpn: "21:00:00:24:ff:00:00:02"}]
links:
  - name: ip0
    type: ipofc
    target: {node: a, device: qla0}
    initiator: {node: b, device: qla0}
"""


def test_doctor_asks_target_mode_of_the_fc_target_node_only() -> None:
    """carrier: fc (the default) needs qla2xxx in target mode and tcm_qla2xxx on the target node;
    the initiator node keeps qla2xxx as an initiator."""
    from fabqual.doctor import requirements_of

    needs = requirements_of(parse_topology(QLA_RACK, "qla.yaml"))
    target_mode = Requirement("target_mode", "qla2xxx", "21:00:00:24:ff:00:00:01")  # its port's own mode counts
    assert needs["a"][target_mode] == {"ip0"} and needs["a"][Requirement("module", "tcm_qla2xxx")] == {"ip0"}
    assert target_mode not in needs["b"] and Requirement("module", "tcm_qla2xxx") not in needs["b"]
