"""What a conformance case reaches: the link's kernel nvmet target and its host, with a journal of its own.

Built from the link's :class:`~fabqual.handles.NvmeNamespace` and what
the nodes say now: the path is read from the host's live controller of the
link's subsystem (``nvme list-subsys``), the nvmet port from the target's
configfs (the port that exports the subsystem on that address). Nothing is
assumed about how the link was brought up, so every link offering
``nvme_namespace`` with a kernel nvmet target (fc_nvme, nvmet_rdma, nvme_tcp)
serves the cases unchanged.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost, NvmePath
from fabqual.drivers.nvmet import ROOT, NvmetTarget
from fabqual.errors import DriverError
from fabqual.executors.base import Executor
from fabqual.topology.model import Link

# Names every case's objects carry: fabqual's NQN space, so a sweep or a later run knows them as its own.
NQN_PREFIX = "nqn.2024-01.io.fabqual:conf-"


def parse_address(address: str) -> dict[str, str]:
    """``traddr=192.168.77.1,trsvcid=4420,src_addr=...`` (nvme-cli/sysfs) → its key=value pairs."""
    pairs = (part.split("=", 1) for part in re.split(r"[,\s]+", address.strip()) if "=" in part)
    return {key: value for key, value in pairs}


@dataclass(frozen=True)
class NvmeFabric:
    """The link's target and host as a case may change them; everything it creates is in ``journal``."""

    link: Link
    target: Executor = field(repr=False)
    host: Executor = field(repr=False)
    journal: Journal = field(repr=False)
    nvmet: NvmetTarget = field(repr=False)  # exports no namespaces: cases make empty subsystems
    nvme: NvmeHost = field(repr=False)
    subsystem_nqn: str  # the link's own subsystem
    path: ConnectSpec  # how the host reaches it, as its live controller says
    port_id: str  # the nvmet port exporting it on that address
    hostnqn: str

    def nqn(self, purpose: str) -> str:
        """A subsystem NQN of fabqual's for one purpose of a case (``conf-<purpose>``)."""
        return NQN_PREFIX + purpose

    def subsystem(self, purpose: str, *, allowed: tuple[str, ...] = (), export: bool = False) -> str:
        """An empty subsystem ``conf-<purpose>`` of the case's, allowing the ``allowed`` host NQNs (none given:
        any host), ``export``-ed on the link's port; one left by an earlier run is removed first."""
        nqn = self.nqn(purpose)
        self.nvmet.remove_stale(nqn)
        self.nvmet.create_subsystem(nqn, allow_any_host=not allowed, allowed_hosts=allowed)
        if export:
            self.nvmet.link_port(self.port_id, nqn)
        return nqn

    def spec(self, nqn: str, **changes: Any) -> ConnectSpec:
        """The link's path to another subsystem (``changes`` override traddr, trsvcid, host_traddr)."""
        return dataclasses.replace(self.path, subsystem_nqn=nqn, **changes)


def live_controller(nvme: NvmeHost, nqn: str) -> NvmePath:
    """The host's first live controller of ``nqn``."""
    for subsystem in nvme.subsystems():
        for path in subsystem.paths if subsystem.nqn == nqn else ():
            if path.state == "live":
                return path
    raise DriverError(f"{nvme.executor.node}: no live controller of {nqn}; the link's host is not connected")


def connected_path(nvme: NvmeHost, nqn: str) -> ConnectSpec:
    """The host's path to ``nqn`` from its first live controller (transport and address as the kernel shows)."""
    path = live_controller(nvme, nqn)
    address = parse_address(path.address)
    if "traddr" not in address:
        raise DriverError(f"{nvme.executor.node}: controller {path.name} shows no traddr ({path.address!r})")
    return ConnectSpec(
        trtype=path.transport,
        traddr=address["traddr"],
        trsvcid=address.get("trsvcid", "") if path.transport != "fc" else "",
        host_traddr=address.get("host_traddr", ""),
        subsystem_nqn=nqn,
    )


def nvmet_ports_of(target: Executor, nqn: str) -> list[tuple[str, str, str, str]]:
    """(port id, trtype, traddr, trsvcid) of every nvmet port exporting ``nqn``."""
    q = shlex.quote
    listing = target.run(
        f'for p in {ROOT}/ports/*; do [ -e "$p/subsystems/"{q(nqn)} ] || continue;'
        ' echo "${p##*/} $(cat $p/addr_trtype) $(cat $p/addr_traddr) $(cat $p/addr_trsvcid)"; done; true',
        timeout=30,
    ).stdout
    ports = []
    for line in listing.splitlines():
        port, trtype, traddr, trsvcid = [*line.split(), "", "", ""][:4]
        ports.append((port, trtype, traddr, trsvcid))
    return ports


def exporting_port(target: Executor, nqn: str, spec: ConnectSpec) -> str:
    """The id of the nvmet port exporting ``nqn`` on the spec's address."""
    seen = []
    for port, trtype, traddr, trsvcid in nvmet_ports_of(target, nqn):
        seen.append(" ".join(w for w in (port, trtype, traddr, trsvcid) if w))
        if trtype == spec.trtype and traddr == spec.traddr and (spec.trtype == "fc" or trsvcid == spec.trsvcid):
            return port
    raise DriverError(
        f"{target.node}: no nvmet port exports {nqn} on {spec.trtype} {spec.traddr} {spec.trsvcid}"
        f" (ports exporting it: {'; '.join(seen) or 'none'}); is the target kernel nvmet?"
    )
