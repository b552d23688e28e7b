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
The steps every NVMe-oF link shares are :mod:`fabqual.links.nvme_fabric`'s.
"""

from __future__ import annotations

import shlex

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.port_rate import netdev_rate
from fabqual.drivers.rdma import netdev_with_address
from fabqual.errors import LabError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name
from fabqual.handles import FabricFault
from fabqual.line_rate import LineRate, PortRate
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
from fabqual.requirement import Requirement, module
from fabqual.tools import fio
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.load import check_extra_paths, check_namespaces
from fabqual.topology.model import Link, Nic, Node, NvmeTcpParams, Topology


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    reqs: list[Requirement] = []
    if device and node.nic(device).driver:
        reqs.append(module(node.nic(device).driver or ""))
    return reqs + nvme_needs(link, role, node, NvmeTcpParams, "tcp")


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, NvmeTcpParams)
    check_namespaces(topology, link, link.params.namespaces)
    check_extra_paths(topology, link, link.params.trsvcid, link.params.extra_paths, "NIC")


SPEC = LinkSpec(
    name="nvme_tcp",
    short="tcp",
    params=NvmeTcpParams,
    roles=NVME_ROLES,
    device_kind="NIC",
    capabilities=("nvme_namespace", "block_device", "nvme_multipath"),
    metrics=fio.SPEC.metric_names,
    requirements=requirements,
    check=check,
    offered_when={"nvme_multipath": has_extra_paths},
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
        self.nvmeof = NvmeOfLink(context, NvmeTcpParams)
        self.link = context.link
        journal = self.nvmeof.journal
        self._ends = PathEnds(
            self.nvmeof, "NIC", lambda executor, node, device: tcp_end(executor, node.nic(device), journal)
        )

    def up(self) -> LinkSession:
        target_node, target = self.nvmeof.target()
        devices = self.nvmeof.scratch(target_node, target)
        params = self.nvmeof.params
        paths = self._ends.paths(params.trsvcid, params.extra_paths)
        fabric_paths = tuple(
            FabricPath(PortAddress("tcp", t.address, str(port)), host_traddr=h.address) for t, h, port in paths
        )
        connected = self.nvmeof.connect(target_node, target, devices, paths[0][1].executor, fabric_paths)

        session = LinkSession(self.link)
        facts = {
            "target": ", ".join(f"{t.describe()}:{port}" for t, _, port in paths),
            "host": ", ".join(dict.fromkeys(h.describe() for _, h, _ in paths)),
        }
        line_rate = LineRate(tuple((t.rate, h.rate) for t, h, _ in paths))
        fault = self._target_fault(connected, session)
        return self.nvmeof.hand_over(session, connected, facts=facts, line_rate=line_rate, fault=fault)

    def _target_fault(self, connected: Connected, session: LinkSession) -> FabricFault:
        """Stop exporting on every port (all paths gone at once), and export again."""
        switches = connected.ports
        nqn = connected.specs[0].subsystem_nqn
        where = ", ".join(f"{s.address.traddr}:{s.address.trsvcid}" for s in switches)

        def inject() -> None:
            for switch in switches:
                switch.stop()

        def repair() -> None:
            for switch in switches:
                switch.resume()
            restore_namespace(session, connected.nvme, connected.specs)

        return FabricFault(f"stop exporting {nqn} on {where}", inject, repair)

    def down(self) -> None:
        self.nvmeof.down()
