"""IPoFC ``carrier: fc`` (LIO tcm_qla2xxx on QLogic HBAs) on the session's shared lab.

No QLogic HBA exists here, so the happy path cannot run. The lab's image ships
``qla2xxx`` and ``tcm_qla2xxx``: the real kernel refusing a tcm_qla2xxx target for
a WWPN no port owns, the qlini_mode checks of the link and the doctor in each
module state, and the link's bring-up failing before it changes anything — each
leaving the guests as they were.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fabqual.doctor import Requirement, check_requirement
from fabqual.drivers.fc_host import FcHostPort
from fabqual.drivers.journal import Journal
from fabqual.drivers.lio import ROOT, Lio, lio_state
from fabqual.drivers.lio_export import export_over_fc, ramdisk
from fabqual.drivers.rundir import RUNS
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor
from fabqual.executors.ssh import SshExecutor
from fabqual.links.ipofc import IpofcLink
from fabqual.topology import Topology, parse_topology

NO_PORT = "21:00:00:24:ff:00:00:01"  # a QLogic-style WWPN no port here owns


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
