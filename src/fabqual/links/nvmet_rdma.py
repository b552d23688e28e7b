"""The ``nvmet_rdma`` link: an NVMe namespace over RoCE, plus the two RDMA endpoints under it.

Composition: scratch devices on the target node → on each end the RNIC's
netdev and address, an rxe device in the emulated lab, the port checked
PORT_ACTIVE and its RoCE v2 GID chosen by type → a target (kernel nvmet-rdma
or SPDK) listening on the target's address → nvme-cli connecting from the host.
With ``extra_paths`` the subsystem listens on one more port per path and the
host connects each: native NVMe multipath, one namespace head over all paths.
The link offers ``nvme_namespace`` and ``rdma_pair``, and ``nvme_multipath``
when it has extra paths. The steps every NVMe-oF link shares are
:mod:`fabqual.links.nvme_fabric`'s; this module keeps the RDMA ends, rate and fault.
"""

from __future__ import annotations

import shlex

from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.rdma_endpoint import rdma_endpoint, wait_port_active
from fabqual.executors.base import log_step
from fabqual.handles import FabricFault, RdmaEndpoint, RdmaPair
from fabqual.line_rate import LineRate
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.nvme_fabric import (
    NVME_ROLES,
    Connected,
    FabricPath,
    NvmeOfLink,
    PathEnds,
    has_extra_paths,
    nvme_needs,
)
from fabqual.links.nvme_repair import restore_namespace
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, rnic_needs
from fabqual.tools import fabric_counters, fio, perftest
from fabqual.topology.load import check_extra_paths, check_namespaces
from fabqual.topology.model import Link, Node, NvmetRdmaParams, Topology


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    return rnic_needs(node, device) + nvme_needs(link, role, node, NvmetRdmaParams, "rdma")


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, NvmetRdmaParams)
    check_namespaces(topology, link, link.params.namespaces)
    check_extra_paths(topology, link, link.params.trsvcid, link.params.extra_paths, "RNIC")


SPEC = LinkSpec(
    name="nvmet_rdma",
    short="rdma",
    params=NvmetRdmaParams,
    roles=NVME_ROLES,
    device_kind="RNIC",
    capabilities=("nvme_namespace", "block_device", "rdma_pair", "nvme_multipath"),
    metrics=fio.SPEC.metric_names + perftest.SPEC.metric_names + fabric_counters.SPEC.metric_names,
    requirements=requirements,
    check=check,
    offered_when={"nvme_multipath": has_extra_paths},
    node_roles=("rdma_endpoint",),
    description="NVMe over RoCE: kernel nvmet-rdma or SPDK, host nvme-rdma; perftest between the RNICs",
)


@link_type(SPEC)
class NvmetRdmaLink:
    def __init__(self, context: LinkContext) -> None:
        self.nvmeof = NvmeOfLink(context, NvmetRdmaParams)
        self.link = context.link
        journal = self.nvmeof.journal
        self._ends = PathEnds(
            self.nvmeof, "RNIC", lambda executor, node, device: rdma_endpoint(executor, node.rnic(device), journal)
        )

    def up(self) -> LinkSession:
        target_node, target = self.nvmeof.target()
        devices = self.nvmeof.scratch(target_node, target)

        params = self.nvmeof.params
        paths = self._ends.paths(params.trsvcid, params.extra_paths)
        server, client, _ = paths[0]
        multipath = len(paths) > 1
        fabric_paths = tuple(
            # With several paths each leaves from its own host port.
            FabricPath(PortAddress("rdma", s.address, str(port)), host_traddr=c.address if multipath else "")
            for s, c, port in paths
        )
        connected = self.nvmeof.connect(target_node, target, devices, client.executor, fabric_paths)

        session = LinkSession(self.link)
        fault = self._netdev_fault(client, connected, session)
        facts = {
            "server": f"{server.node}:{server.device}/{server.port} gid {server.gid_index} {server.address}",
            "client": f"{client.node}:{client.device}/{client.port} gid {client.gid_index} {client.address}",
            "active_mtu": str(server.active_mtu),
        }
        if multipath:
            facts["paths"] = ", ".join(f"{s.address}:{port} from {c.address}" for s, c, port in paths)
        line_rate = LineRate(tuple((s.port_rate, c.port_rate) for s, c, _ in paths))
        self.nvmeof.hand_over(session, connected, facts=facts, line_rate=line_rate, fault=fault)
        session.rdma_pair = RdmaPair(self.link, server, client)
        return session

    def _netdev_fault(self, client: RdmaEndpoint, connected: Connected, session: LinkSession) -> FabricFault:
        """Take the host's RDMA path away mid-I/O, and the way to bring it back.

        A real RNIC's netdev is set down. A soft-RoCE device is removed instead:
        while its netdev is down rxe only drops frames, so I/O then fails only
        when keep-alive notices (seen: not within 120 s under TCG), and RDMA CM
        exchanges begun meanwhile stay stuck for minutes after it comes back.
        Removing the device makes nvme-rdma drop its controller at once.
        """
        executor, netdev, device = client.executor, client.netdev, client.device
        host_end = self.link.end("host")
        soft_roce = self.nvmeof.context.topology.node(host_end.node).rnic(host_end.device or "").emulation == "rxe"
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
            self.nvmeof.journal.record_command(executor, gone, give)  # teardown brings it back
            executor.run(take, timeout=take_s)

        def bring_back() -> None:
            log_step(executor.node, giving)
            executor.run(give, timeout=give_s)

        def repair() -> None:
            bring_back()
            wait_port_active(executor, device, client.port, client.address)
            restore_namespace(session, connected.nvme, connected.specs)

        return FabricFault(description, inject, repair)

    def down(self) -> None:
        self.nvmeof.down()
