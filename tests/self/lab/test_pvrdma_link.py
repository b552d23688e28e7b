"""The pvrdma link driver: its vCenter half against a real vcsim, its guest half on the emulated lab.

The vCenter half needs only VMware's simulator (built from Debian's govmomi
sources); those tests run wherever ``go`` and the govmomi sources are installed.
The guest half needs the two lab guests: those tests run only while the emulated
lab is up (``fabqual lab up``), and never start or stop it (others share it).
The topology is the lab's own, with the pvrdma section the lab generator writes
(:func:`fabqual.lab.topology.add_pvrdma`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabqual.drivers.guest_rdma import ensure_pvrdma_active, guest_endpoint, require_rdma_path
from fabqual.drivers.journal import Journal
from fabqual.drivers.rdma import rdma_links
from fabqual.errors import DriverError, FabqualError, LabError
from fabqual.executors import executor_for_node
from fabqual.executors.base import Executor
from fabqual.lab.lab import EmulatedLab
from fabqual.lab.topology import VCSIM_PASSWORD_ENV, add_pvrdma, free_tcp_port, lab_topology, render
from fabqual.links.base import LinkContext, driver_for
from fabqual.links.pvrdma import PvrdmaLink, VSphereSide, vsphere_plan
from fabqual.topology.load import parse_topology
from fabqual.topology.model import Rnic, Topology
from fabqual.vsphere import vcsim
from tests.self.integration.test_vcenter_driver import snapshot

needs_vcsim = pytest.mark.skipif(
    shutil.which("go") is None or not (vcsim.GOPATH / "src/github.com/vmware/govmomi/simulator").is_dir(),
    reason="vcsim needs Debian's golang-go and golang-github-vmware-govmomi-dev (apt-get install them)",
)
LAB = EmulatedLab()
# The guest half runs on the emulated lab's two guests (booted once per session by conftest).
needs_lab = pytest.mark.usefixtures("lab")


def topology_text(
    data: dict[str, Any], tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None
) -> Topology:
    if edit is not None:
        edit(data)
    path = tmp_path / "topology.yaml"
    path.write_text(render(data))
    return parse_topology(path.read_text(), str(path))


def offline_topology(tmp_path: Path, ssh_port: int = 22) -> Topology:
    """The lab's generated topology for guests that do not exist (SSH ports closed)."""
    return topology_text(lab_topology({"tgt": ssh_port, "ini": ssh_port}, tmp_path / "key", tmp_path / "kh"), tmp_path)


def lab_topology_with_pvrdma(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Topology:
    """The running lab's topology; the pvrdma section added if the lab was booted before it existed."""
    data = yaml.safe_load(LAB.topology_path.read_text())
    if not data.get("vcenters"):
        add_pvrdma(data, free_tcp_port())
    return topology_text(data, tmp_path, edit)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# -- vCenter half, against a real vcsim ---------------------------------------------------


@needs_vcsim
def test_vsphere_half_configures_reads_back_records_gaps_and_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vcsim is started on the topology's port with the env password, configured (second pass changes
    nothing), its gaps land in the facts, and teardown gives back the starting inventory."""
    monkeypatch.setenv(VCSIM_PASSWORD_ENV, "pw-from-env")
    topology = offline_topology(tmp_path)
    plan = vsphere_plan(topology, topology.links_of("pvrdma")[0])
    assert plan.hosts == (
        ("DC0_C0_H0", "vmnic1", "vmk1", "192.168.77.11/24"),
        ("DC0_C0_H1", "vmnic1", "vmk1", "192.168.77.12/24"),
    )
    assert plan.vms == ("DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1")
    side = VSphereSide(plan)
    try:
        side.start()
        assert side.vcsim is not None
        sim = side.vcsim
        assert (sim.port, sim.password) == (plan.vcenter.port, "pw-from-env")
        before = snapshot(sim)
        changes = side.configure()  # raises if the read-back second pass changed anything
        assert {c.target for c in changes.changed} >= {"switch fabqual-pvrdma-dvs", "VM DC0_C0_RP0_VM0"}
        facts = side.facts()
        gaps = facts["vcenter_unsupported"]
        # The simulator's documented gaps, each recorded with the server's own words.
        assert "AddVirtualNic" in gaps and "rdmaDevice is empty" in gaps and "NotSupported" in gaps
        assert facts["vcenter_tls"] == "verified against the simulator's own certificate"
        assert "vcsim" in facts["vcenter"] and "API 7.0.3.0" in facts["vcenter"]
        assert snapshot(sim) != before
        side.teardown()
        assert snapshot(sim) == before
    finally:
        side.stop()
    assert not pid_alive(sim.pid) and port_free(sim.port)


@needs_vcsim
def test_failure_in_the_middle_of_up_undoes_the_vcenter_and_stops_vcsim(tmp_path: Path) -> None:
    """The guests are unreachable (closed SSH port): up() fails after vCenter was configured, down()
    undoes every vCenter change and stops the simulator it started."""
    closed = free_tcp_port()
    topology = offline_topology(tmp_path, ssh_port=closed)
    executors: dict[str, Executor] = {}

    def executor(name: str) -> Executor:
        executors.setdefault(name, executor_for_node(topology.node(name)))
        return executors[name]

    link = driver_for(LinkContext(topology, topology.links_of("pvrdma")[0], executor))
    assert isinstance(link, PvrdmaLink)
    with pytest.raises(FabqualError) as failure:
        link.up()
    assert "tgt" in str(failure.value)
    driver, sim = link.vsphere.driver, link.vsphere.vcsim
    assert driver is not None and sim is not None and driver.pending_undo  # the vCenter half was done
    link.down()
    assert driver.pending_undo == []
    assert not pid_alive(sim.pid) and port_free(sim.port)
    for ex in executors.values():
        ex.close()


def test_real_vcenter_without_its_password_variable_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real vCenter's password comes only from its variable; unset, nothing is contacted."""
    monkeypatch.delenv("FABQUAL_TEST_VC_PASSWORD", raising=False)

    def real(data: dict[str, Any]) -> None:
        data["vcenters"][0].update(simulator=False, password_env="FABQUAL_TEST_VC_PASSWORD")

    topology = topology_text(lab_topology({"tgt": 22, "ini": 22}, tmp_path / "k", tmp_path / "kh"), tmp_path, real)
    side = VSphereSide(vsphere_plan(topology, topology.links_of("pvrdma")[0]))
    with pytest.raises(LabError) as error:
        side.start()
    assert "FABQUAL_TEST_VC_PASSWORD is not set" in one_line(error.value)
    assert side.vcsim is None


def test_host_without_vmknic_address_fails_before_anything_is_touched(tmp_path: Path) -> None:
    def no_address(data: dict[str, Any]) -> None:
        del data["esxi_hosts"][1]["vmknic_address"]

    topology = topology_text(
        lab_topology({"tgt": 22, "ini": 22}, tmp_path / "k", tmp_path / "kh"), tmp_path, no_address
    )
    with pytest.raises(LabError) as error:
        vsphere_plan(topology, topology.links_of("pvrdma")[0])
    assert "DC0_C0_H1 has no vmknic_address" in one_line(error.value)


# -- guest half, on the emulated lab's guests ---------------------------------------------


@pytest.fixture
def lab_executors(tmp_path: Path) -> Iterator[tuple[Topology, Callable[[str], Executor]]]:
    topology = lab_topology_with_pvrdma(tmp_path)
    executors: dict[str, Executor] = {}

    def executor(name: str) -> Executor:
        executors.setdefault(name, executor_for_node(topology.node(name)))
        return executors[name]

    yield topology, executor
    for ex in executors.values():
        ex.close()


@needs_lab
def test_tcp_fallback_on_a_guest_without_rdma_device_fails_clearly(
    lab_executors: tuple[Topology, Callable[[str], Executor]],
) -> None:
    """The lab guest ``ini`` has no PVRDMA device (its kernel lacks vmw_pvrdma): the reload fallback is
    tried, fails, and the endpoint is refused with the TCP-fallback reason, in one line."""
    _topology, executor = lab_executors
    ini = executor("ini")
    with pytest.raises(DriverError) as reload_failed:
        ensure_pvrdma_active(ini, "vmw_pvrdma0")
    line = one_line(reload_failed.value)
    assert line.startswith("ini: RDMA device vmw_pvrdma0 is missing and reloading vmw_pvrdma failed")
    assert "silently fall back to its TCP channel" in line
    with pytest.raises(DriverError) as no_device:
        require_rdma_path(ini, "vmw_pvrdma0", "eth1")
    assert "ini: no RDMA device vmw_pvrdma0" in one_line(no_device.value)
    assert "silently fall back to its TCP channel" in str(no_device.value)
    # The management netdev never carries an RDMA device: the rxe-mode check on it fails too.
    with pytest.raises(DriverError) as not_on_netdev:
        require_rdma_path(ini, "rxe0", "eth0")
    assert "silently fall back to its TCP channel" in one_line(not_on_netdev.value)


@needs_lab
@needs_vcsim
def test_link_refuses_to_come_up_when_a_vm_has_no_rdma_device(tmp_path: Path) -> None:
    """The whole link with ``ini`` as a real VM (vmw_pvrdma0, no emulation): up() fails with the
    TCP-fallback DriverError instead of handing out a pair, and down() leaves nothing behind."""

    def real_vm_on_ini(data: dict[str, Any]) -> None:
        ini = next(n for n in data["nodes"] if n["name"] == "ini")
        rnic = next(r for r in ini["rnics"] if r["name"] == "pvrdma0")
        rnic.update(emulation="none", rdma_device="vmw_pvrdma0", driver="vmw_pvrdma")

    topology = lab_topology_with_pvrdma(tmp_path, real_vm_on_ini)
    executors: dict[str, Executor] = {}

    def executor(name: str) -> Executor:
        executors.setdefault(name, executor_for_node(topology.node(name)))
        return executors[name]

    links_before = {name: rdma_links(executor(name)) for name in ("tgt", "ini")}
    link = driver_for(LinkContext(topology, topology.links_of("pvrdma")[0], executor))
    assert isinstance(link, PvrdmaLink)
    try:
        with pytest.raises(DriverError) as failure:
            link.up()
        assert "ini: RDMA device vmw_pvrdma0 is missing" in one_line(failure.value)
        assert "TCP channel" in str(failure.value)
        sim = link.vsphere.vcsim
        assert sim is not None
    finally:
        link.down()
    assert not pid_alive(sim.pid)
    assert {name: rdma_links(executor(name)) for name in ("tgt", "ini")} == links_before
    for ex in executors.values():
        ex.close()


@needs_lab
@needs_vcsim
def test_pvrdma_link_end_to_end_on_the_lab(lab_executors: tuple[Topology, Callable[[str], Executor]]) -> None:
    """vcsim configured, both guests on rxe with the RoCE v2 IPv4 GID chosen by type, RDMA traffic
    between them, and afterwards the guests' RDMA devices and the simulator as they were."""
    topology, executor = lab_executors
    links_before = {name: rdma_links(executor(name)) for name in ("tgt", "ini")}
    link = driver_for(LinkContext(topology, topology.links_of("pvrdma")[0], executor))
    assert isinstance(link, PvrdmaLink)
    try:
        session = link.up()
        sim = link.vsphere.vcsim
        assert sim is not None
        pair = session.rdma_pair
        assert (pair.server.node, pair.server.address) == ("tgt", "192.168.77.1")
        assert (pair.client.node, pair.client.address) == ("ini", "192.168.77.2")
        for end in (pair.server, pair.client):
            base = f"/sys/class/infiniband/{end.device}/ports/{end.port}"
            kind = end.executor.run(f"cat {base}/gid_attrs/types/{end.gid_index}").stdout.strip()
            gid = end.executor.run(f"cat {base}/gids/{end.gid_index}").stdout.strip()
            assert kind == "RoCE v2"
            assert re.fullmatch(r"0000:0000:0000:0000:0000:ffff:[0-9a-f]{4}:[0-9a-f]{4}", gid)
            assert end.netdev == "eth1" and end.rate_gbps
        assert "AddVirtualNic" in session.facts["vcenter_unsupported"]
        result = pair.perftest("ib_write_lat", size=2, iterations=100)
        assert result.lat_typical_us and result.lat_typical_us > 0
    finally:
        link.down()
    assert not pid_alive(sim.pid)
    assert {name: rdma_links(executor(name)) for name in ("tgt", "ini")} == links_before


@needs_lab
def test_guest_endpoint_uses_the_data_netdev_address(lab_executors: tuple[Topology, Callable[[str], Executor]]) -> None:
    """An rnic whose address is not on its netdev is refused rather than silently moved."""
    _topology, executor = lab_executors
    rnic = Rnic(
        name="pvrdma0", netdev="eth0", rdma_device="rxe0", driver="rdma_rxe", emulation="rxe", address="192.168.77.2/24"
    )
    journal = Journal()
    with pytest.raises(LabError) as error:
        guest_endpoint(executor("ini"), rnic, journal)
    assert "192.168.77.2 of RNIC pvrdma0 is on eth1, not on the data netdev eth0" in one_line(error.value)
    assert len(journal) == 0
