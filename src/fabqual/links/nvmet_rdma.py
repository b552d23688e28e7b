"""The ``nvmet_rdma`` link: an NVMe namespace over RoCE, plus the two RDMA endpoints under it.

Composition: scratch devices on the target node → on each end the RNIC's
netdev and address, an rxe device in the emulated lab, the port checked
PORT_ACTIVE and its RoCE v2 GID chosen by type → a target (kernel nvmet-rdma
or SPDK) listening on the target's address → nvme-cli connecting from the host.
With ``extra_paths`` the subsystem listens on one more port per path and the
host connects each: native NVMe multipath, one namespace head over all paths.
The link offers ``nvme_namespace`` and ``rdma_pair``, and ``nvme_multipath``
when it has extra paths.
"""

from __future__ import annotations

import shlex

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.rdma_endpoint import rdma_endpoint, wait_port_active
from fabqual.drivers.scratch import ensure_scratch
from fabqual.drivers.target import Export, export
from fabqual.errors import DriverError
from fabqual.executors.base import log_step
from fabqual.handles import FabricFault, NvmeNamespace, RdmaEndpoint, RdmaPair
from fabqual.line_rate import LineRate
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.nvme_repair import connect_paths, path_fault, restore_namespace
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, nvme_export_needs, nvme_host_needs, rnic_needs
from fabqual.tools import fabric_counters, fio, perftest
from fabqual.topology.load import check_extra_paths, check_namespaces
from fabqual.topology.model import Link, Node, NvmetRdmaParams, Topology


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    reqs = rnic_needs(node, device)
    if not isinstance(link.params, NvmetRdmaParams):
        return reqs
    if role == "host":
        return reqs + nvme_host_needs("rdma")
    return reqs + nvme_export_needs(node, link.params.namespaces, "rdma")


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, NvmetRdmaParams)
    check_namespaces(topology, link, link.params.namespaces)
    check_extra_paths(topology, link, link.params.trsvcid, link.params.extra_paths, "RNIC")


SPEC = LinkSpec(
    name="nvmet_rdma",
    short="rdma",
    params=NvmetRdmaParams,
    roles={"target": "nvme_target", "host": "nvme_host"},
    device_kind="RNIC",
    capabilities=("nvme_namespace", "block_device", "rdma_pair", "nvme_multipath"),
    metrics=fio.SPEC.metric_names + perftest.SPEC.metric_names + fabric_counters.SPEC.metric_names,
    requirements=requirements,
    check=check,
    offered_when={"nvme_multipath": lambda link: bool(getattr(link.params, "extra_paths", ()))},
    node_roles=("rdma_endpoint",),
    description="NVMe over RoCE: kernel nvmet-rdma or SPDK, host nvme-rdma; perftest between the RNICs",
)


@link_type(SPEC)
class NvmetRdmaLink:
    def __init__(self, context: LinkContext) -> None:
        self.context = context
        self.link = context.link
        self.journal = Journal(context.run_dirs)
        if not isinstance(self.link.params, NvmetRdmaParams):
            raise DriverError(f"link {self.link.name}: nvmet_rdma link without nvmet_rdma params")
        self.params: NvmetRdmaParams = self.link.params
        self._endpoints: dict[tuple[str, str], RdmaEndpoint] = {}

    def _endpoint(self, role: str, device: str | None) -> RdmaEndpoint:
        """The RDMA end on ``device`` (an RNIC of the role's node), set up once however many paths use it."""
        node = self.context.topology.node(self.link.end(role).node)
        if device is None:
            raise DriverError(f"link {self.link.name}: the {role} end names no RNIC (device:)")
        if (role, device) not in self._endpoints:
            executor = self.context.executor(node.name)
            self._endpoints[(role, device)] = rdma_endpoint(executor, node.rnic(device), self.journal)
        return self._endpoints[(role, device)]

    def _paths(self) -> list[tuple[RdmaEndpoint, RdmaEndpoint, int]]:
        """(server, client, trsvcid) of the link's own path, then of each extra path."""
        own_target, own_host = self.link.end("target").device, self.link.end("host").device
        wanted = [(own_target, own_host, self.params.trsvcid)]
        wanted += [(p.target or own_target, p.host or own_host, p.trsvcid) for p in self.params.extra_paths]
        return [(self._endpoint("target", t), self._endpoint("host", h), port) for t, h, port in wanted]

    def up(self) -> LinkSession:
        target_end = self.link.end("target")
        target_node = self.context.topology.node(target_end.node)
        target = self.context.executor(target_node.name)
        devices = tuple(
            ensure_scratch(target, self.journal, target_node.scratch(name)) for name in self.params.namespaces
        )

        paths = self._paths()
        server, client, _ = paths[0]
        multipath = len(paths) > 1
        nvme = NvmeHost(client.executor, self.journal)
        hostnqn = nvme.hostnqn()
        nqn = self.params.subsystem_nqn
        exported = export(
            target_node,
            target,
            self.journal,
            Export(
                nqn=nqn,
                devices=devices,
                addresses=tuple(PortAddress("rdma", s.address, str(port)) for s, _, port in paths),
                allow_any_host=self.link.emulated,
                allowed_hosts=() if self.link.emulated else (hostnqn,),
            ),
        )
        specs = tuple(
            ConnectSpec(
                trtype="rdma",
                traddr=s.address,
                trsvcid=str(port),
                # With several paths each leaves from its own host port.
                host_traddr=c.address if multipath else "",
                subsystem_nqn=nqn,
            )
            for s, c, port in paths
        )
        controllers, device = connect_paths(nvme, specs, self.link.name)

        session = LinkSession(self.link, facts={})
        fault = self._netdev_fault(client, nvme, specs, session)
        path_faults = tuple(path_fault(switch, nvme, nqn, len(specs)) for switch in exported.ports) if multipath else ()
        facts = {
            "target_backend": exported.backend,
            "server": f"{server.node}:{server.device}/{server.port} gid {server.gid_index} {server.address}",
            "client": f"{client.node}:{client.device}/{client.port} gid {client.gid_index} {client.address}",
            "hostnqn": hostnqn,
            "active_mtu": str(server.active_mtu),
        }
        facts.update({f"scratch {d.name}": d.fact() for d in devices})  # declared → kernel device, serial/WWID
        if multipath:
            facts["paths"] = ", ".join(f"{s.address}:{port} from {c.address}" for s, c, port in paths)
        line_rate = LineRate(tuple((s.port_rate, c.port_rate) for s, c, _ in paths))
        facts["line_rate"] = line_rate.describe()
        session.facts = facts
        session.nvme_namespace = NvmeNamespace(
            link=self.link,
            host=client.executor,
            device=device.path,
            transport="rdma",
            subsystem_nqn=nqn,
            scratch=True,  # export() refuses every device that is not declared scratch
            controllers=controllers,
            size_bytes=device.size_bytes or 0,
            target_node=target_node.name,
            fault=fault,
            path_faults=path_faults,
            facts=facts,
            line_rate=line_rate,
        )
        session.rdma_pair = RdmaPair(self.link, server, client)
        return session

    def _netdev_fault(
        self, client: RdmaEndpoint, nvme: NvmeHost, specs: tuple[ConnectSpec, ...], session: LinkSession
    ) -> FabricFault:
        """Take the host's RDMA path away mid-I/O, and the way to bring it back.

        A real RNIC's netdev is set down. A soft-RoCE device is removed instead:
        while its netdev is down rxe only drops frames, so I/O then fails only
        when keep-alive notices (seen: not within 120 s under TCG), and RDMA CM
        exchanges begun meanwhile stay stuck for minutes after it comes back.
        Removing the device makes nvme-rdma drop its controller at once.
        """
        executor, netdev, device = client.executor, client.netdev, client.device
        host_end = self.link.end("host")
        soft_roce = self.context.topology.node(host_end.node).rnic(host_end.device or "").emulation == "rxe"
        if soft_roce:
            take = f"rdma link delete {shlex.quote(device)}"
            add = f"rdma link add {shlex.quote(device)} type rxe netdev {shlex.quote(netdev)}"
            give = f"test -e /sys/class/infiniband/{shlex.quote(device)} || {add}"
            taking, giving, gone = (
                f"remove soft-RoCE device {device}",
                f"re-create soft-RoCE device {device} on {netdev}",
                f"{device} removed",
            )
            description = f"remove the RDMA device {device} of {executor.node}"
            take_s, give_s = 120, 60  # rxe waits for its QPs to go
        else:
            take = f"ip link set dev {shlex.quote(netdev)} down"
            give = f"ip link set dev {shlex.quote(netdev)} up"
            taking, giving, gone = f"set {netdev} down", f"set {netdev} up", f"{netdev} down"
            description = f"set {netdev} on {executor.node} down"
            take_s = give_s = 30

        def inject() -> None:
            log_step(executor.node, f"{taking} (fault injection)")
            self.journal.record_command(executor, gone, give)  # teardown brings it back
            executor.run(take, timeout=take_s)

        def bring_back() -> None:
            log_step(executor.node, giving)
            executor.run(give, timeout=give_s)

        def repair() -> None:
            bring_back()
            wait_port_active(executor, device, client.port, client.address)
            restore_namespace(session, nvme, specs)

        return FabricFault(description, inject, repair)

    def down(self) -> None:
        self.journal.undo_all()
