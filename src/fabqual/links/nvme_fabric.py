"""What every NVMe-oF link driver shares: scratch → export → connect → namespace handle → down.

A link type over a fabric of its own (``fc_nvme``, ``nvmet_rdma``, ``nvme_tcp``)
keeps in its module only what differs: how its ports are found, set up and
addressed, its line rate, its fabric fault and its facts. It composes an
:class:`NvmeOfLink` and calls its steps in this order, each journaled:

1. :meth:`NvmeOfLink.scratch`: the declared namespaces proven safe on the target node;
2. the transport brings its ports up and says, per path, where the target
   listens and the host's own address (:class:`FabricPath`);
3. :meth:`NvmeOfLink.connect`: the host's NQN, the export through the node's
   target backend, discovery and ``nvme connect`` on every path;
4. :meth:`NvmeOfLink.hand_over`: the facts and the :class:`NvmeNamespace` handle
   (one path fault per path when there are several).

:class:`PathEnds` gives a link with ``extra_paths`` the ends of each path, each
set up once however many paths use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import ConnectSpec, NvmeDevice, NvmeHost
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.scratch import SafeScratch, ensure_scratch
from fabqual.drivers.target import Export, PortSwitch, export
from fabqual.errors import DriverError
from fabqual.executors.base import Executor
from fabqual.handles import FabricFault, NvmeNamespace
from fabqual.line_rate import LineRate
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.nvme_repair import path_fault
from fabqual.requirement import Requirement, nvme_export_needs, nvme_host_needs
from fabqual.topology.model import Link, Node


class NvmeParams(Protocol):
    """The params every NVMe-oF link type has (its own record adds the rest)."""

    @property
    def namespaces(self) -> tuple[str, ...]: ...

    @property
    def subsystem_nqn(self) -> str: ...


class ExtraPath(Protocol):
    """One entry of a link's ``extra_paths``: devices of each end (None: the link's own) and the port."""

    @property
    def target(self) -> str | None: ...

    @property
    def host(self) -> str | None: ...

    @property
    def trsvcid(self) -> int: ...


P = TypeVar("P", bound=NvmeParams)
E = TypeVar("E")

# The ends every NVMe-oF link has, and the node role each needs: the steps below ask for these two.
NVME_ROLES: Mapping[str, str] = MappingProxyType({"target": "nvme_target", "host": "nvme_host"})


def nvme_needs(link: Link, role: str, node: Node, params: type[NvmeParams], trtype: str) -> list[Requirement]:
    """What an NVMe-oF end needs besides its device: on the host the ``nvme-<trtype>`` module, nvme-cli
    and fio; on the target what exporting the link's namespaces over ``trtype`` takes. Nothing when the
    link's params are not ``params`` (the loader made them so; the doctor asks before any check)."""
    if not isinstance(link.params, params):
        return []
    if role == "host":
        return nvme_host_needs(trtype)
    return nvme_export_needs(node, link.params.namespaces, trtype)


def has_extra_paths(link: Link) -> bool:
    """Whether the link declares ``extra_paths``: it then offers ``nvme_multipath``."""
    return bool(getattr(link.params, "extra_paths", ()))


@dataclass(frozen=True)
class FabricPath:
    """One path as the transport set it up: where the target listens, and the host's address (or "")."""

    listen: PortAddress
    host_traddr: str = ""


@dataclass(frozen=True)
class Connected:
    """The subsystem exported and connected on every path."""

    target_node: str
    devices: tuple[SafeScratch, ...]
    backend: str  # the target backend's registered name
    ports: tuple[PortSwitch, ...]  # one per path, in path order
    nvme: NvmeHost
    hostnqn: str
    specs: tuple[ConnectSpec, ...]  # one per path, in path order
    controllers: tuple[str, ...]
    device: NvmeDevice  # the namespace's block device on the host


def connect_paths(nvme: NvmeHost, specs: tuple[ConnectSpec, ...], link: str) -> tuple[tuple[str, ...], NvmeDevice]:
    """Discover at every path, check each offers the subsystem, connect them all: the controllers and
    the namespace's block device on the host."""
    nqn = specs[0].subsystem_nqn
    for spec in specs:
        records = nvme.discover(spec)
        if not any(r.subnqn == nqn for r in records):
            offered = ", ".join(r.subnqn for r in records) or "nothing"
            where = f"{spec.traddr}:{spec.trsvcid}" if spec.trsvcid else spec.traddr
            raise DriverError(f"link {link}: discovery at {where} offers {offered}, not {nqn}")
    controllers = tuple(c for spec in specs for c in nvme.connect(spec))
    return controllers, nvme.namespace_device(nqn)


class NvmeOfLink(Generic[P]):
    """One NVMe-oF link's params, journal and shared steps; ``down()`` undoes the journal in reverse."""

    def __init__(self, context: LinkContext, params: type[P]) -> None:
        self.context = context
        self.link = context.link
        self.journal = Journal(context.run_dirs)
        if not isinstance(self.link.params, params):
            raise DriverError(f"link {self.link.name}: {self.link.type} link without {self.link.type} params")
        self.params: P = self.link.params

    def end_device(self, role: str, kind: str) -> tuple[Node, str]:
        """The node of the ``role`` end and the device it names (``kind``: HBA, RNIC, NIC, for the error)."""
        end = self.link.end(role)
        node = self.context.topology.node(end.node)
        if end.device is None:
            raise DriverError(f"link {self.link.name}: the {role} end names no {kind} (device:)")
        return node, end.device

    def target(self) -> tuple[Node, Executor]:
        node = self.context.topology.node(self.link.end("target").node)
        return node, self.context.executor(node.name)

    def scratch(self, target_node: Node, target: Executor) -> tuple[SafeScratch, ...]:
        """The link's namespaces: scratch devices of the target node, each proven safe (or created) first."""
        return tuple(ensure_scratch(target, self.journal, target_node.scratch(name)) for name in self.params.namespaces)

    def connect(
        self,
        target_node: Node,
        target: Executor,
        devices: tuple[SafeScratch, ...],
        host: Executor,
        paths: Sequence[FabricPath],
    ) -> Connected:
        """Export the subsystem on every path's address (only this host allowed on a rack), then connect each."""
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
                addresses=tuple(path.listen for path in paths),
                allow_any_host=self.link.emulated,
                allowed_hosts=() if self.link.emulated else (hostnqn,),
            ),
        )
        specs = tuple(
            ConnectSpec(
                trtype=path.listen.trtype,
                traddr=path.listen.traddr,
                trsvcid=path.listen.trsvcid,
                host_traddr=path.host_traddr,
                subsystem_nqn=nqn,
            )
            for path in paths
        )
        controllers, device = connect_paths(nvme, specs, self.link.name)
        return Connected(
            target_node.name, devices, exported.backend, exported.ports, nvme, hostnqn, specs, controllers, device
        )

    def hand_over(
        self,
        session: LinkSession,
        connected: Connected,
        *,
        facts: dict[str, str],
        line_rate: LineRate,
        fault: FabricFault | None,
    ) -> LinkSession:
        """Put the facts and the namespace handle into ``session``: the transport's own ``facts`` between
        the target backend and the host NQN, then the line rate and each scratch device's verdict."""
        all_facts = {"target_backend": connected.backend, **facts, "hostnqn": connected.hostnqn}
        all_facts["line_rate"] = line_rate.describe()
        # declared → kernel device, serial/WWID
        all_facts.update({f"scratch {d.name}": d.fact() for d in connected.devices})
        specs, nvme = connected.specs, connected.nvme
        nqn = specs[0].subsystem_nqn
        multipath = len(specs) > 1
        session.facts = all_facts
        session.nvme_namespace = NvmeNamespace(
            link=self.link,
            host=nvme.executor,
            device=connected.device.path,
            transport=specs[0].trtype,
            subsystem_nqn=nqn,
            scratch=True,  # export() refuses every device that is not declared scratch
            controllers=connected.controllers,
            size_bytes=connected.device.size_bytes or 0,
            target_node=connected.target_node,
            fault=fault,
            path_faults=tuple(path_fault(s, nvme, nqn, len(specs)) for s in connected.ports) if multipath else (),
            facts=all_facts,
            line_rate=line_rate,
        )
        return session

    def down(self) -> None:
        self.journal.undo_all()


class PathEnds(Generic[E]):
    """The ends of a link's paths (its own, then each of ``extra_paths``), each set up once.

    ``make(executor, node, device)`` sets one end up on ``device`` of ``node``
    (journaled); ``kind`` names the device kind in errors (RNIC, NIC).
    """

    def __init__(self, nvmeof: NvmeOfLink[P], kind: str, make: Callable[[Executor, Node, str], E]) -> None:
        self._link = nvmeof.link
        self._context = nvmeof.context
        self._kind = kind
        self._make = make
        self._ends: dict[tuple[str, str], E] = {}

    def end(self, role: str, device: str | None) -> E:
        """The end on ``device`` of the role's node, set up once however many paths use it."""
        node = self._context.topology.node(self._link.end(role).node)
        if device is None:
            raise DriverError(f"link {self._link.name}: the {role} end names no {self._kind} (device:)")
        if (role, device) not in self._ends:
            self._ends[(role, device)] = self._make(self._context.executor(node.name), node, device)
        return self._ends[(role, device)]

    def paths(self, trsvcid: int, extra_paths: Sequence[ExtraPath]) -> list[tuple[E, E, int]]:
        """(target end, host end, trsvcid) of the link's own path, then of each extra path."""
        own_target, own_host = self._link.end("target").device, self._link.end("host").device
        wanted = [(own_target, own_host, trsvcid)]
        wanted += [(p.target or own_target, p.host or own_host, p.trsvcid) for p in extra_paths]
        return [(self.end("target", t), self.end("host", h), port) for t, h, port in wanted]
