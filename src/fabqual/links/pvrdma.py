"""The ``pvrdma`` link: two VMs on two ESXi hosts talking RDMA through PVRDMA adapters.

Two halves. The vSphere half (:class:`VSphereSide`) makes the vCenter match the
seeds' recipe through :class:`~fabqual.vsphere.vcenter.VCenterDriver` (vDS 7.0,
port group, hosts and uplinks, vmknic, ``Net.PVRDMAVmknic``, firewall, VMs with
all memory reserved and a PVRDMA adapter), then runs the same configuration a
second time, which must change nothing: every object is read back. In the
emulated lab the vCenter is VMware's simulator, started here and stopped at
``down()``; the steps it lacks are recorded in the session's facts. The guest
half (:mod:`fabqual.drivers.guest_rdma`) brings up one RDMA endpoint per VM.

The documented silent fallback to TCP (no RDMA device active on a host) fails
the bring-up on both halves: the vCenter driver refuses a host without an active
RDMA device paired with the uplink, and each guest must show its RDMA device
PORT_ACTIVE on the data netdev.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field

from fabqual import redaction
from fabqual.drivers.guest_rdma import guest_endpoint
from fabqual.drivers.journal import Journal
from fabqual.errors import DriverError, FabqualError, LabError
from fabqual.executors.base import log_step
from fabqual.handles import RdmaEndpoint, RdmaPair
from fabqual.links.base import LinkContext, LinkSession
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, rnic_needs
from fabqual.tools import fabric_counters, perftest
from fabqual.topology.load import check_vcenter
from fabqual.topology.model import EsxiHost, Link, Node, PvrdmaParams, Topology, VCenter
from fabqual.vsphere.vcenter import Changes, HostPlan, VCenterDriver
from fabqual.vsphere.vcsim import VcsimInstance, running_vcsim


@dataclass(frozen=True)
class VSpherePlan:
    """What the link asks of its vCenter, resolved from the topology before anything is touched."""

    vcenter: VCenter
    switch: str
    portgroup: str
    mtu: int
    hosts: tuple[HostPlan, ...]
    vms: tuple[str, ...]


def vsphere_plan(topology: Topology, link: Link) -> VSpherePlan:
    """The vCenter, hosts (with uplink/vmknic/address) and VMs of a pvrdma link, each one checked."""
    params = link.params
    if not isinstance(params, PvrdmaParams):
        raise DriverError(f"link {link.name}: pvrdma link without pvrdma params")
    vcenter = topology.vcenter(params.vcenter)
    hosts: list[HostPlan] = []
    vms: list[str] = []
    for role in ("server", "client"):
        node: Node = topology.node(link.end(role).node)
        if node.vm is None:
            raise LabError(
                f"link {link.name}: {role} node {node.name} has no vm: placement (vcenter, esxi_host, vm_name)"
            )
        if node.vm.vcenter != vcenter.name:
            raise LabError(
                f"link {link.name}: node {node.name} lives in vCenter {node.vm.vcenter}, the link uses {vcenter.name}"
            )
        esxi = _esxi_host(topology, node.vm.esxi_host, link)
        if esxi.vmknic_address is None:
            raise LabError(
                f"link {link.name}: ESXi host {esxi.name} has no vmknic_address; PVRDMA needs {esxi.vmknic}"
                " addressed on the RDMA network"
            )
        plan = (esxi.name, esxi.uplink, esxi.vmknic, esxi.vmknic_address)
        if plan not in hosts:  # two VMs on one host: the host is configured once
            hosts.append(plan)
        vms.append(node.vm.vm_name)
    return VSpherePlan(vcenter, params.switch, params.portgroup, params.mtu, tuple(hosts), tuple(vms))


def _esxi_host(topology: Topology, name: str, link: Link) -> EsxiHost:
    for host in topology.esxi_hosts:
        if host.name == name:
            return host
    raise LabError(f"link {link.name}: no ESXi host {name!r} under esxi_hosts")


def vcenter_driver(
    vc: VCenter,
    password: str | None = None,
    address: str | None = None,
    port: int | None = None,
    ca_file: str | None = None,
) -> VCenterDriver:
    """A driver (not yet connected) for ``vc``; a real vCenter's password comes from its variable."""
    if password is None:
        password = os.environ.get(vc.password_env, "")
        if not password:
            raise LabError(
                f"vCenter {vc.name}: environment variable {vc.password_env} is not set; export the password of"
                f" {vc.user} in it before the run"
            )
    return VCenterDriver(
        address or vc.address,
        port or vc.port,
        vc.user,
        password,
        verify_tls=vc.tls_verify,
        ca_file=ca_file or vc.ca_file,
        thumbprint=vc.thumbprint,
        datacenter=vc.datacenter,
        tolerate_unimplemented=vc.simulator,
    )


@dataclass
class VSphereSide:
    """The vCenter (or the simulator started for it) and the PVRDMA configuration made there."""

    plan: VSpherePlan
    vcsim: VcsimInstance | None = None
    driver: VCenterDriver | None = None
    changes: Changes | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self) -> VCenterDriver:
        """Start vcsim if the vCenter is the simulator, then log in (TLS verified unless opted out)."""
        vc = self.plan.vcenter
        if vc.simulator:
            # A password nobody else knows when the variable is unset: the simulator is ours alone.
            password = os.environ.get(vc.password_env, "") or secrets.token_urlsafe(16)
            redaction.register(password)
            self.vcsim = self._stack.enter_context(running_vcsim(vc.port, vc.user, password))
            # Trust exactly the simulator's own certificate (it makes a new one at every start).
            self.driver = vcenter_driver(
                vc, password, self.vcsim.address, self.vcsim.port, vc.ca_file or str(self.vcsim.cert_path)
            )
        else:
            self.driver = vcenter_driver(vc)
        self.driver.connect()
        self._stack.callback(self.driver.close)
        return self.driver

    def configure(self) -> Changes:
        """Configure, then configure again: the second pass reads every object back and must change nothing."""
        if self.driver is None:
            raise DriverError(f"vCenter {self.plan.vcenter.name}: configure() before start()")
        p = self.plan
        self.changes = self.driver.configure_pvrdma(p.switch, p.portgroup, p.mtu, p.hosts, p.vms)
        again = self.driver.configure_pvrdma(p.switch, p.portgroup, p.mtu, p.hosts, p.vms)
        if not again.nothing_changed:
            raise DriverError(
                f"vCenter {p.vcenter.name}: the PVRDMA configuration did not stick; a second pass made"
                f" {again.summary()}"
            )
        return self.changes

    def facts(self) -> dict[str, str]:
        """For the report: the vCenter and its hosts' builds, what changed, and the simulator's gaps."""
        facts: dict[str, str] = {}
        if self.driver is None:
            return facts
        vc = self.plan.vcenter
        inventory = self.driver.inventory()
        about = inventory["vcenter"]
        facts["vcenter"] = f"{about['product']} (API {about['api_version']}) at {about['address']}"
        if self.vcsim is not None:
            facts["vcenter"] += " - VMware's vCenter simulator (vcsim) standing in for vCenter"
        hosts = {h["name"]: h for h in inventory["hosts"]}
        for name, _uplink, _vmk, _ip in self.plan.hosts:
            host = hosts.get(name)
            if host is not None:
                devices = ", ".join(f"{d['device']} ({d['driver']})" for d in host["rdma_devices"]) or "none"
                facts[f"esxi {name}"] = f"{host['product']}; RDMA devices: {devices}"
        anchor = "the simulator's own certificate" if self.vcsim else vc.thumbprint or vc.ca_file or "system CAs"
        facts["vcenter_tls"] = f"verified against {anchor}" if vc.tls_verify else "not verified (tls_verify: false)"
        if self.changes is not None:
            facts["vcenter_changes"] = self.changes.summary()
            if self.changes.swept:
                facts["vcenter_swept"] = " | ".join(self.changes.swept)
            if self.changes.unsupported:
                facts["vcenter_unsupported"] = " | ".join(str(u) for u in self.changes.unsupported)
        return facts

    def teardown(self) -> None:
        """Undo the configuration (vCenter back to its starting inventory)."""
        if self.driver is not None and self.driver.pending_undo:
            self.driver.teardown()

    def stop(self) -> None:
        """Log out and stop the simulator if it was started here."""
        self._stack.close()
        self.driver = None
        self.vcsim = None


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    return rnic_needs(node, device)


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, PvrdmaParams)
    check_vcenter(topology, link, link.params.vcenter)


SPEC = LinkSpec(
    name="pvrdma",
    short="pvrdma",
    params=PvrdmaParams,
    roles={"server": "vm", "client": "vm"},
    device_kind="RNIC",
    capabilities=("rdma_pair",),
    metrics=perftest.SPEC.metric_names + fabric_counters.SPEC.metric_names,
    requirements=requirements,
    check=check,
    description="VMware paravirtual RDMA set up through vCenter; perftest between two VMs",
)


@link_type(SPEC)
class PvrdmaLink:
    def __init__(self, context: LinkContext) -> None:
        self.context = context
        self.link = context.link
        self.plan = vsphere_plan(context.topology, self.link)
        self.vsphere = VSphereSide(self.plan)
        self.journal = Journal(context.run_dirs)

    def _endpoint(self, role: str) -> RdmaEndpoint:
        end = self.link.end(role)
        node = self.context.topology.node(end.node)
        if end.device is None:
            raise DriverError(f"link {self.link.name}: the {role} end names no RNIC (device:)")
        return guest_endpoint(self.context.executor(node.name), node.rnic(end.device), self.journal)

    def up(self) -> LinkSession:
        self.vsphere.start()
        self.vsphere.configure()
        server = self._endpoint("server")
        client = self._endpoint("client")
        facts = self.vsphere.facts()
        facts.update(
            {
                "server": f"{server.node}:{server.device}/{server.port} gid {server.gid_index} {server.address}"
                f" on {server.netdev}",
                "client": f"{client.node}:{client.device}/{client.port} gid {client.gid_index} {client.address}"
                f" on {client.netdev}",
                "active_mtu": str(server.active_mtu),
            }
        )
        pair = RdmaPair(self.link, server, client)
        facts["line_rate"] = pair.line_rate.describe()
        log_step(self.link.name, f"pvrdma link up: {facts['server']} <-> {facts['client']}")
        return LinkSession(self.link, rdma_pair=pair, facts=facts)

    def down(self) -> None:
        """Guests first, then the vCenter configuration, then the simulator; every step runs, errors come at the end."""
        failures: list[str] = []
        for step in (self.journal.undo_all, self.vsphere.teardown, self.vsphere.stop):
            try:
                step()
            except FabqualError as error:
                failures.append(str(error))
        if failures:
            raise DriverError(f"link {self.link.name}: teardown incomplete: " + " | ".join(failures))
