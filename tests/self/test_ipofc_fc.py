"""IPoFC ``carrier: fc`` (LIO tcm_qla2xxx on QLogic HBAs): what runs without an HBA.

No QLogic HBA exists here, so the happy path cannot run. What can:

* the HBA port resolver (``fc_host.pick_port``) on fc_host dumps captured in the
  emulated lab (fixtures/outputs/fcoe, origin in its README);
* on the session's shared lab, whose image ships ``qla2xxx`` and ``tcm_qla2xxx``:
  the real kernel refusing a tcm_qla2xxx target for a WWPN no port owns, the
  qlini_mode checks of the link and the doctor in each module state, and the
  link's bring-up failing before it changes anything — each leaving the guests
  as they were.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fabqual.doctor import Requirement, check_requirement
from fabqual.drivers.fc_host import FcHostPort, parse_fc_hosts, parse_qlini_mode, pick_port
from fabqual.drivers.journal import Journal
from fabqual.drivers.lio import ROOT, Lio, lio_state
from fabqual.drivers.lio_export import export_over_fc, ramdisk
from fabqual.drivers.rundir import RUNS
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor
from fabqual.executors.ssh import SshExecutor
from fabqual.links.ipofc import IpofcLink
from fabqual.topology import Topology, parse_topology
from fabqual.topology.model import Hba

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "outputs" / "fcoe"  # origin: README.md there
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


@pytest.fixture()
def guests(ssh: dict[str, SshExecutor]) -> tuple[Executor, Executor]:
    """The two guests of the session's shared lab (tests/self/conftest.py)."""
    return ssh["tgt"], ssh["ini"]


def snapshot(node: Executor) -> dict[str, object]:
    """What a bring-up could leave on a node: LIO objects, fabrics, FC/SCSI hosts, files, links
    (loaded modules stay loaded, as for every LIO fabric: target_core_mod's own entries are left out,
    and so are the empty class directories loading qla2xxx creates - the hosts in them count)."""
    out = node.run(
        f"ls {ROOT} 2>/dev/null | grep -vxE 'core|dbroot|version'; echo --;"
        " ls -d /sys/class/fc_host/* /sys/class/scsi_host/* 2>/dev/null; echo --;"
        f" ls -A {RUNS} 2>/dev/null; echo --; ip -o link show | cut -d: -f2; ip netns list",
        timeout=30,
    ).stdout
    return {"lio": lio_state(node), "rest": out}


@pytest.fixture()
def qla2xxx(guests: tuple[Executor, Executor]) -> Iterator[Executor]:
    """tgt with qla2xxx unloaded; it is unloaded again afterwards unless it was loaded before."""
    tgt, _ = guests
    was_loaded = tgt.run("test -d /sys/module/qla2xxx", timeout=30, check=False).ok
    tgt.run("rmmod tcm_qla2xxx 2>/dev/null; rmmod qla2xxx 2>/dev/null; true", timeout=60)
    yield tgt
    tgt.run("rmmod tcm_qla2xxx 2>/dev/null; rmmod qla2xxx 2>/dev/null; true", timeout=60)
    if was_loaded:
        tgt.run("modprobe qla2xxx", timeout=120)


def load_qla2xxx(node: Executor, qlini_mode: str) -> None:
    node.run("rmmod tcm_qla2xxx 2>/dev/null; rmmod qla2xxx 2>/dev/null; true", timeout=60)
    node.run(f"modprobe qla2xxx qlini_mode={shlex.quote(qlini_mode)}", timeout=120)


def test_tcm_qla2xxx_refuses_a_wwpn_no_port_owns_and_leaves_nothing(
    guests: tuple[Executor, Executor], qla2xxx: Executor
) -> None:
    """The real kernel refuses the WWN mkdir (qlt_lport_register finds no target-mode port): the
    error names node, WWPN and the qlini_mode fix, and the journal removes the fabric it made."""
    tgt, ini = guests
    before = snapshot(tgt), snapshot(ini)
    load_qla2xxx(tgt, "disabled")  # target mode on, yet no port: the WWPN is the only cause left
    journal = Journal()
    lio = Lio(tgt, journal)
    lio.prepare()
    with pytest.raises(DriverError) as error:
        try:
            lio.qla2xxx_tpg(NO_PORT)
        finally:
            journal.undo_all()
    message = str(error.value)
    assert message.startswith(f"tgt: tcm_qla2xxx refused target {NO_PORT}:") and "\n" not in message
    assert "qlini_mode=disabled" in message and "/sys/class/fc_host/*/port_name" in message
    assert (snapshot(tgt), snapshot(ini)) == before
    assert "tcm_qla2xxx" in tgt.run("lsmod", timeout=30).stdout  # the refusal came from the real module


def test_export_over_fc_checks_target_mode_first_and_unwinds_a_refused_target(
    guests: tuple[Executor, Executor], qla2xxx: Executor
) -> None:
    """export_over_fc refuses a node whose qla2xxx is missing or initiator-only before touching LIO;
    in target mode it builds the backstore, meets the kernel's refusal, and the journal unwinds it."""
    tgt, ini = guests
    before = snapshot(tgt), snapshot(ini)
    target_port = FcHostPort("host7", "0x20000024ff000001", "0x21000024ff000001", "Online", "8 Gbit")
    initiator_port = FcHostPort("host7", "0x20000024ff000002", "0x21000024ff000002", "Online", "8 Gbit")

    def export(journal: Journal) -> None:
        export_over_fc(
            tgt,
            ini,
            journal,
            ramdisk("fq_selftest_qla", 4 << 20),
            target_port=target_port,
            initiator_port=initiator_port,
            vendor="LIO-ORG",
            model="RAMDISK-MCP",
        )

    for mode, why in ((None, "qla2xxx is not loaded"), ("enabled", "qlini_mode=enabled")):
        if mode:
            load_qla2xxx(tgt, mode)
        journal = Journal()
        with pytest.raises(LabError, match=f"^tgt: .*{why}.*cannot be an LIO target; load qla2xxx"):
            export(journal)
        assert len(journal) == 0, f"{why}: changed something before refusing"
    load_qla2xxx(tgt, "dual")
    journal = Journal()
    with pytest.raises(DriverError, match=f"tcm_qla2xxx refused target {NO_PORT}"):
        try:
            export(journal)
        finally:
            journal.undo_all()
    assert (snapshot(tgt), snapshot(ini)) == before


def test_doctor_reports_qla2xxx_target_mode_in_each_state(qla2xxx: Executor) -> None:
    """The doctor's target_mode requirement on the real module: missing, initiator-only, target."""
    requirement = Requirement("target_mode", "qla2xxx")
    what, fix = check_requirement(qla2xxx, requirement) or ("", "")
    assert what.startswith("qla2xxx is not loaded") and "qlini_mode=disabled" in fix
    load_qla2xxx(qla2xxx, "enabled")
    what, _ = check_requirement(qla2xxx, requirement) or ("", "")
    assert "qlini_mode=enabled (initiator only)" in what
    load_qla2xxx(qla2xxx, "disabled")
    assert check_requirement(qla2xxx, requirement) is None
    # a declared WWPN with no fc_host port here falls back to the module's mode
    assert check_requirement(qla2xxx, Requirement("target_mode", "qla2xxx", NO_PORT)) is None


def fc_topology(lab_topology: Path) -> Topology:
    """The lab topology with a QLogic HBA on each guest and the ipofc link on carrier fc."""
    data = yaml.safe_load(lab_topology.read_text())
    for node, wwpn in (("tgt", NO_PORT), ("ini", "21:00:00:24:ff:00:00:02")):
        (entry,) = (n for n in data["nodes"] if n["name"] == node)
        entry["hbas"].append({"name": "qla0", "model": "QLE2562", "driver": "qla2xxx", "wwpn": wwpn})
    (link,) = (link for link in data["links"] if link["type"] == "ipofc")
    link.update(
        name="ipofcfc",
        carrier="fc",
        emulated=False,
        target={"node": "tgt", "device": "qla0"},
        initiator={"node": "ini", "device": "qla0"},
    )
    return parse_topology(yaml.safe_dump(data), "emulated-lab-with-qla.yaml")


def test_fc_link_without_the_hba_fails_naming_the_port_and_leaves_nothing(guests: tuple[Executor, Executor]) -> None:
    """carrier: fc on guests without a QLogic port: up() fails with one line naming the node, the
    HBA and its missing fc_host WWPN before changing anything; down() leaves the guests as they were."""
    from fabqual.lab import EmulatedLab
    from fabqual.links.base import LinkContext, driver_for

    tgt, ini = guests
    topology = fc_topology(EmulatedLab().topology_path)
    (link,) = topology.links_of("ipofc")
    driver = driver_for(LinkContext(topology, link, lambda name: {"tgt": tgt, "ini": ini}[name]))
    assert isinstance(driver, IpofcLink)
    before = snapshot(tgt), snapshot(ini)
    try:
        with pytest.raises(LabError) as error:
            driver.up()
    finally:
        driver.down()
    assert str(error.value) == "tgt: HBA qla0 WWPN 0x21000024ff000001 not in /sys/class/fc_host (seen: none)"
    assert (snapshot(tgt), snapshot(ini)) == before


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
