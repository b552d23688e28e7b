"""The ``nvme_tcp`` link: an NVMe namespace exported over TCP/IP.

Composition: scratch devices on the target node → on each end a NIC's netdev
holding its declared address (added, journaled, when it is not there) → a
target (kernel ``nvmet-tcp``, or SPDK's TCP transport on a node whose
``nvme_target.backend`` is spdk) listening on the target NIC's address → nvme-cli
connecting with ``-t tcp`` from the host's address. With ``extra_paths`` the
subsystem listens on one more port per path and the host connects each: native
NVMe multipath. The link offers ``nvme_namespace`` (and so ``block_device``), and
``nvme_multipath`` when it has extra paths.

Its fabric fault stops the target exporting the subsystem on every port (the
host's TCP connections are closed by the target and its reconnects refused),
then exports again: no host interface is set down, so links sharing the data
network with this one (RoCE, FCoE in the lab; other traffic on a rack) are not
disturbed. The line rate is the slower netdev ``speed`` of each path's two ends.
"""

from __future__ import annotations

import shlex

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.port_rate import netdev_rate
from fabqual.drivers.rdma import netdev_with_address
from fabqual.drivers.scratch import ensure_scratch
from fabqual.drivers.target import Export, PortSwitch, export
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name
from fabqual.handles import FabricFault, NvmeNamespace
from fabqual.line_rate import LineRate, PortRate
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.nvme_repair import connect_paths, path_fault, restore_namespace
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, module, nvme_export_needs, nvme_host_needs
from fabqual.tools import fio
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.load import check_extra_paths, check_namespaces
from fabqual.topology.model import Link, Nic, Node, NvmeTcpParams, Topology


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    reqs: list[Requirement] = []
    if device and node.nic(device).driver:
        reqs.append(module(node.nic(device).driver or ""))
    if not isinstance(link.params, NvmeTcpParams):
        return reqs
    if role == "host":
        return reqs + nvme_host_needs("tcp")
    return reqs + nvme_export_needs(node, link.params.namespaces, "tcp")


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, NvmeTcpParams)
    check_namespaces(topology, link, link.params.namespaces)
    check_extra_paths(topology, link, link.params.trsvcid, link.params.extra_paths, "NIC")


SPEC = LinkSpec(
    name="nvme_tcp",
    short="tcp",
    params=NvmeTcpParams,
    roles={"target": "nvme_target", "host": "nvme_host"},
    device_kind="NIC",
    capabilities=("nvme_namespace", "block_device", "nvme_multipath"),
    metrics=fio.SPEC.metric_names,
    requirements=requirements,
    check=check,
    offered_when={"nvme_multipath": lambda link: bool(getattr(link.params, "extra_paths", ()))},
    description="NVMe over TCP: kernel nvmet-tcp or SPDK's TCP transport, host nvme-tcp",
)


class TcpEnd:
    """One end of a path: the node, its NIC's netdev and address (no prefix), its port rate."""

    def __init__(self, executor: Executor, nic: Nic, netdev: str, address: str, rate: PortRate) -> None:
        self.executor = executor
        self.nic = nic
        self.netdev = netdev
        self.address = address
        self.rate = rate

    def describe(self) -> str:
        return f"{self.executor.node}:{self.netdev} {self.address}"


def tcp_end(executor: Executor, nic: Nic, journal: Journal) -> TcpEnd:
    """The NIC's netdev with its address on it: found, or the address added (journaled)."""
    address = nic.address.split("/")[0]
    holder = netdev_with_address(executor, address)
    netdev = nic.netdev if nic.netdev != DISCOVER else holder
    if netdev is None:
        raise LabError(f"{executor.node}: no interface holds {address} for NIC {nic.name}; set netdev: in the topology")
    where = shlex.quote(f"/sys/class/net/{plain_name(executor.node, 'netdev', netdev)}")
    if not executor.run(f"test -d {where}", timeout=30, check=False).ok:
        raise LabError(f"{executor.node}: NIC {nic.name}'s netdev {netdev} does not exist; fix netdev: in the topology")
    if holder is not None and holder != netdev:
        raise LabError(f"{executor.node}: {address} of NIC {nic.name} is on {holder}, not on {netdev}")
    if holder is None:
        log_step(executor.node, f"add {nic.address} to {netdev}")
        add = f"ip addr add {shlex.quote(nic.address)} dev {shlex.quote(netdev)}"
        with journal.ahead(
            executor,
            f"address {nic.address} on {netdev}",
            f"ip addr del {shlex.quote(nic.address)} dev {shlex.quote(netdev)}",
        ):
            executor.run(add, timeout=30)
    up = executor.run(f"cat {where}/operstate", timeout=30, check=False).stdout.strip()
    if up not in ("up", "unknown"):
        raise LabError(f"{executor.node}: {netdev} of NIC {nic.name} is {up or 'not readable'}; bring its link up")
    return TcpEnd(executor, nic, netdev, address, netdev_rate(executor, netdev))


@link_type(SPEC)
class NvmeTcpLink:
    def __init__(self, context: LinkContext) -> None:
        self.context = context
        self.link = context.link
        self.journal = Journal(context.run_dirs)
        if not isinstance(self.link.params, NvmeTcpParams):
            raise DriverError(f"link {self.link.name}: nvme_tcp link without nvme_tcp params")
        self.params: NvmeTcpParams = self.link.params
        self._ends: dict[tuple[str, str], TcpEnd] = {}

    def _end(self, role: str, device: str | None) -> TcpEnd:
        """The TCP end on ``device`` (a NIC of the role's node), set up once however many paths use it."""
        node = self.context.topology.node(self.link.end(role).node)
        if device is None:
            raise DriverError(f"link {self.link.name}: the {role} end names no NIC (device:)")
        if (role, device) not in self._ends:
            self._ends[(role, device)] = tcp_end(self.context.executor(node.name), node.nic(device), self.journal)
        return self._ends[(role, device)]

    def _paths(self) -> list[tuple[TcpEnd, TcpEnd, int]]:
        """(target end, host end, trsvcid) of the link's own path, then of each extra path."""
        own_target, own_host = self.link.end("target").device, self.link.end("host").device
        wanted = [(own_target, own_host, self.params.trsvcid)]
        wanted += [(p.target or own_target, p.host or own_host, p.trsvcid) for p in self.params.extra_paths]
        return [(self._end("target", t), self._end("host", h), port) for t, h, port in wanted]

    def up(self) -> LinkSession:
        target_node = self.context.topology.node(self.link.end("target").node)
        target = self.context.executor(target_node.name)
        devices = tuple(
            ensure_scratch(target, self.journal, target_node.scratch(name)) for name in self.params.namespaces
        )
        paths = self._paths()
        host = paths[0][1].executor
        multipath = len(paths) > 1
        nvme = NvmeHost(host, self.journal)
        hostnqn = nvme.hostnqn()
        nqn = self.params.subsystem_nqn
        exported = export(
            target_node,
            target,
            self.journal,
            Export(
                nqn=nqn,
                devices=devices,
                addresses=tuple(PortAddress("tcp", t.address, str(port)) for t, _, port in paths),
                allow_any_host=self.link.emulated,
                allowed_hosts=() if self.link.emulated else (hostnqn,),
            ),
        )
        specs = tuple(
            ConnectSpec(trtype="tcp", traddr=t.address, trsvcid=str(port), host_traddr=h.address, subsystem_nqn=nqn)
            for t, h, port in paths
        )
        controllers, device = connect_paths(nvme, specs, self.link.name)

        session = LinkSession(self.link)
        line_rate = LineRate(tuple((t.rate, h.rate) for t, h, _ in paths))
        facts = {
            "target_backend": exported.backend,
            "target": ", ".join(f"{t.describe()}:{port}" for t, _, port in paths),
            "host": ", ".join(dict.fromkeys(h.describe() for _, h, _ in paths)),
            "hostnqn": hostnqn,
            "line_rate": line_rate.describe(),
        }
        facts.update({f"scratch {d.name}": d.fact() for d in devices})  # declared → kernel device, serial/WWID
        session.facts = facts
        session.nvme_namespace = NvmeNamespace(
            link=self.link,
            host=host,
            device=device.path,
            transport="tcp",
            subsystem_nqn=nqn,
            scratch=True,  # export() refuses every device that is not declared scratch
            controllers=controllers,
            size_bytes=device.size_bytes or 0,
            target_node=target_node.name,
            fault=self._target_fault(exported.ports, nvme, specs, session),
            path_faults=tuple(path_fault(s, nvme, nqn, len(specs)) for s in exported.ports) if multipath else (),
            facts=facts,
            line_rate=line_rate,
        )
        return session

    def _target_fault(
        self, switches: tuple[PortSwitch, ...], nvme: NvmeHost, specs: tuple[ConnectSpec, ...], session: LinkSession
    ) -> FabricFault:
        """Stop exporting on every port (all paths gone at once), and export again."""
        nqn = specs[0].subsystem_nqn
        where = ", ".join(f"{s.address.traddr}:{s.address.trsvcid}" for s in switches)

        def inject() -> None:
            for switch in switches:
                switch.stop()

        def repair() -> None:
            for switch in switches:
                switch.resume()
            restore_namespace(session, nvme, specs)

        return FabricFault(f"stop exporting {nqn} on {where}", inject, repair)

    def down(self) -> None:
        self.journal.undo_all()
