"""The ``fc_nvme`` link: an NVMe namespace exported over Fibre Channel.

Composition: scratch devices on the target node → FC ports (real HBAs found in
``/sys/class/fc_host``, or nvme-fcloop in the emulated lab) → a target
(kernel nvmet-fc or SPDK, from the topology) listening on the target port's
WWNs → nvme-cli on the host connecting from its port's WWNs. Everything goes
into one journal that ``down()`` undoes in reverse.
"""

from __future__ import annotations

from fabqual.drivers.fc_host import resolve_port
from fabqual.drivers.fcloop import HOST_PORT, TARGET_PORT, FcAddress, FcloopFabric
from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.port_rate import fc_rate, fcloop_rate
from fabqual.drivers.scratch import ensure_scratch
from fabqual.drivers.target import Export, export
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor
from fabqual.handles import FabricFault, NvmeNamespace
from fabqual.line_rate import LineRate
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.nvme_repair import connect_paths, restore_namespace
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, hba_needs, module, nvme_export_needs, nvme_host_needs
from fabqual.tools import fabric_counters, fio
from fabqual.topology.load import check_namespaces
from fabqual.topology.model import FcNvmeParams, Hba, Link, Node, Topology


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    reqs = hba_needs(node, device)
    if not isinstance(link.params, FcNvmeParams):
        return reqs
    if role == "host":
        return reqs + nvme_host_needs("fc")
    reqs += nvme_export_needs(node, link.params.namespaces, "fc")
    if device and node.hba(device).emulation == "fcloop":
        reqs.append(module("nvme-fcloop"))
    return reqs


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, FcNvmeParams)
    check_namespaces(topology, link, link.params.namespaces)


SPEC = LinkSpec(
    name="fc_nvme",
    short="fc",
    params=FcNvmeParams,
    roles={"target": "nvme_target", "host": "nvme_host"},
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
        self.context = context
        self.link = context.link
        self.journal = Journal(context.run_dirs)
        if not isinstance(self.link.params, FcNvmeParams):
            raise DriverError(f"link {self.link.name}: fc_nvme link without fc_nvme params")
        self.params: FcNvmeParams = self.link.params

    def _end(self, role: str) -> tuple[Node, Hba, Executor]:
        end = self.link.end(role)
        node = self.context.topology.node(end.node)
        if end.device is None:
            raise DriverError(f"link {self.link.name}: the {role} end names no HBA (device:)")
        return node, node.hba(end.device), self.context.executor(node.name)

    def up(self) -> LinkSession:
        target_node, target_hba, target = self._end("target")
        host_node, host_hba, host = self._end("host")
        devices = tuple(
            ensure_scratch(target, self.journal, target_node.scratch(name)) for name in self.params.namespaces
        )

        fabric: FcloopFabric | None = None
        line_rate: LineRate
        if target_hba.emulation == "fcloop":
            if host_node.name != target_node.name:
                raise LabError(
                    f"link {self.link.name}: nvme-fcloop loops inside one kernel; target and host must be one node"
                )
            fabric = FcloopFabric(target, self.journal)
            fabric.up()
            target_port, host_port = TARGET_PORT, HOST_PORT
            # One loop inside one kernel: the one port rate there is stands for both ends.
            line_rate = LineRate.one_path(fcloop_rate(target, target_hba))
        else:
            found_target, found_host = resolve_port(target, target_hba), resolve_port(host, host_hba)
            target_port = FcAddress(found_target.wwnn, found_target.wwpn)
            host_port = FcAddress(found_host.wwnn, found_host.wwpn)
            line_rate = LineRate.one_path(fc_rate(target_node.name, found_target), fc_rate(host_node.name, found_host))

        nvme = NvmeHost(host, self.journal)
        hostnqn = nvme.hostnqn()
        nqn = self.params.subsystem_nqn
        backend = export(
            target_node,
            target,
            self.journal,
            Export(
                nqn=nqn,
                devices=devices,
                addresses=(PortAddress("fc", target_port.nvme_traddr),),
                allow_any_host=self.link.emulated,
                allowed_hosts=() if self.link.emulated else (hostnqn,),
            ),
        ).backend
        spec = ConnectSpec(
            trtype="fc",
            traddr=target_port.nvme_traddr,
            host_traddr=host_port.nvme_traddr,
            subsystem_nqn=nqn,
        )
        controllers, device = connect_paths(nvme, (spec,), self.link.name)

        session = LinkSession(self.link)
        fault = None
        if fabric is not None:
            live_fabric = fabric

            def repair() -> None:
                live_fabric.add_remote_port()
                restore_namespace(session, nvme, (spec,))

            fault = FabricFault(
                f"delete the fcloop remote port {TARGET_PORT.wwpn}", live_fabric.delete_remote_port, repair
            )
        facts = {
            "target_backend": backend,
            "target_wwpn": target_port.wwpn,
            "host_wwpn": host_port.wwpn,
            "hostnqn": hostnqn,
            "emulation": target_hba.emulation,
            "line_rate": line_rate.describe(),
        }
        facts.update({f"scratch {d.name}": d.fact() for d in devices})  # declared → kernel device, serial/WWID
        session.facts = facts
        session.nvme_namespace = NvmeNamespace(
            link=self.link,
            host=host,
            device=device.path,
            transport="fc",
            subsystem_nqn=nqn,
            scratch=True,  # export() refuses every device that is not declared scratch
            controllers=controllers,
            size_bytes=device.size_bytes or 0,
            target_node=target_node.name,
            fault=fault,
            facts=facts,
            line_rate=line_rate,
        )
        return session

    def down(self) -> None:
        self.journal.undo_all()
