"""The ``fc_nvme`` link: an NVMe namespace exported over Fibre Channel.

Composition: scratch devices on the target node → FC ports (real HBAs found in
``/sys/class/fc_host``, or nvme-fcloop in the emulated lab) → a target
(kernel nvmet-fc or SPDK, from the topology) listening on the target port's
WWNs → nvme-cli on the host connecting from its port's WWNs. Everything goes
into one journal that ``down()`` undoes in reverse. The steps every NVMe-oF
link shares (scratch, export, connect, the namespace handle) are
:mod:`fabqual.links.nvme_fabric`'s; this module keeps the FC ports, rate and fault.
"""

from __future__ import annotations

from fabqual.drivers.fc_host import resolve_port
from fabqual.drivers.fcloop import HOST_PORT, TARGET_PORT, FcAddress, FcloopFabric
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.port_rate import fc_rate, fcloop_rate
from fabqual.errors import LabError
from fabqual.executors.base import Executor
from fabqual.handles import FabricFault
from fabqual.line_rate import LineRate
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.nvme_fabric import NVME_ROLES, FabricPath, NvmeOfLink, nvme_needs
from fabqual.links.nvme_repair import restore_namespace
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, hba_needs, module
from fabqual.tools import fabric_counters, fio
from fabqual.topology.load import check_namespaces
from fabqual.topology.model import FcNvmeParams, Hba, Link, Node, Topology


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    reqs = hba_needs(node, device) + nvme_needs(link, role, node, FcNvmeParams, "fc")
    if role != "host" and isinstance(link.params, FcNvmeParams) and device and node.hba(device).emulation == "fcloop":
        reqs.append(module("nvme-fcloop"))
    return reqs


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, FcNvmeParams)
    check_namespaces(topology, link, link.params.namespaces)


SPEC = LinkSpec(
    name="fc_nvme",
    short="fc",
    params=FcNvmeParams,
    roles=NVME_ROLES,
    device_kind="HBA",
    capabilities=("nvme_namespace", "block_device"),
    metrics=fio.SPEC.metric_names + fabric_counters.SPEC.metric_names,
    requirements=requirements,
    check=check,
    description="NVMe over Fibre Channel: kernel nvmet-fc or SPDK, host nvme-fc",
)


@link_type(SPEC)
class FcNvmeLink:
    def __init__(self, context: LinkContext) -> None:
        self.nvmeof = NvmeOfLink(context, FcNvmeParams)
        self.link = context.link

    def _end(self, role: str) -> tuple[Node, Hba, Executor]:
        node, device = self.nvmeof.end_device(role, "HBA")
        return node, node.hba(device), self.nvmeof.context.executor(node.name)

    def up(self) -> LinkSession:
        target_node, target_hba, target = self._end("target")
        host_node, host_hba, host = self._end("host")
        devices = self.nvmeof.scratch(target_node, target)

        fabric: FcloopFabric | None = None
        line_rate: LineRate
        if target_hba.emulation == "fcloop":
            if host_node.name != target_node.name:
                raise LabError(
                    f"link {self.link.name}: nvme-fcloop loops inside one kernel; target and host must be one node"
                )
            fabric = FcloopFabric(target, self.nvmeof.journal)
            fabric.up()
            target_port, host_port = TARGET_PORT, HOST_PORT
            # One loop inside one kernel: the one port rate there is stands for both ends.
            line_rate = LineRate.one_path(fcloop_rate(target, target_hba))
        else:
            found_target, found_host = resolve_port(target, target_hba), resolve_port(host, host_hba)
            target_port = FcAddress(found_target.wwnn, found_target.wwpn)
            host_port = FcAddress(found_host.wwnn, found_host.wwpn)
            line_rate = LineRate.one_path(fc_rate(target_node.name, found_target), fc_rate(host_node.name, found_host))

        path = FabricPath(PortAddress("fc", target_port.nvme_traddr), host_traddr=host_port.nvme_traddr)
        connected = self.nvmeof.connect(target_node, target, devices, host, (path,))

        session = LinkSession(self.link)
        fault = None
        if fabric is not None:
            live_fabric = fabric

            def repair() -> None:
                live_fabric.add_remote_port()
                restore_namespace(session, connected.nvme, connected.specs)

            fault = FabricFault(
                f"delete the fcloop remote port {TARGET_PORT.wwpn}", live_fabric.delete_remote_port, repair
            )
        facts = {"target_wwpn": target_port.wwpn, "host_wwpn": host_port.wwpn, "emulation": target_hba.emulation}
        return self.nvmeof.hand_over(session, connected, facts=facts, line_rate=line_rate, fault=fault)

    def down(self) -> None:
        self.nvmeof.down()
