"""An nvmet port of the case's own on the link's fabric: a path it may take away without touching the link's.

IP transports (rdma, tcp): a port on the link's target address at another
service id. FC: nvmet-fc takes one nvmet port per target port, so with
nvme-fcloop the case adds a target port of its own (fabqual's case WWNs) and
the host's remote port for it, from the link's host port; on real HBAs a
second target port would be a second HBA port the topology does not declare,
so the caller skips with that reason. A port whose last subsystem is removed
stops listening: the host's reconnect attempts are then refused the way a
lost path refuses them (not with a "no such subsystem" status, which the host
must not retry). Everything is journaled in the case's journal.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fabqual.conformance.fabric import NvmeFabric, parse_address
from fabqual.drivers.fcloop import CTL, REMOTE_ROLES, FcAddress
from fabqual.drivers.journal import exists, write
from fabqual.drivers.nvmet import PortAddress
from fabqual.errors import DriverError
from fabqual.executors.base import log_step

CASE_TRSVCID = "4433"
CASE_FC_PORT = FcAddress("0x10001100ab0000c1", "0x20001100ab0000c1")


@dataclass(frozen=True)
class CasePort:
    port_id: str
    traddr: str
    trsvcid: str

    def changes(self) -> dict[str, str]:
        """What :meth:`NvmeFabric.spec` needs to reach this port instead of the link's."""
        return {"traddr": self.traddr, "trsvcid": self.trsvcid}


def case_port(fabric: NvmeFabric) -> CasePort | str:
    """A new nvmet port for the case on the link's fabric, or why the link cannot have one."""
    path = fabric.path
    if path.trtype != "fc":
        port = fabric.nvmet.create_port(PortAddress(path.trtype, path.traddr, CASE_TRSVCID))
        return CasePort(port, path.traddr, CASE_TRSVCID)
    target = fabric.target
    if not exists(target, CTL):
        return (
            f"{target.node}: the link's FC target port is an HBA port ({path.traddr}); a second target port"
            " needs a second HBA port, which the topology does not declare"
        )
    host = parse_fc_traddr(path.host_traddr)
    for kind in ("remote", "target"):  # a killed run's ports with the case's WWNs (fabqual's mark)
        command = f"echo {shlex.quote(CASE_FC_PORT.fcloop_args)} > {CTL}/del_{kind}_port"
        if target.run(command, timeout=30, check=False).ok:
            log_step(target.node, f"removed stale fcloop {kind} port {CASE_FC_PORT.wwpn} left by an earlier run")
    undo_target = f"echo {shlex.quote(CASE_FC_PORT.fcloop_args)} > {CTL}/del_target_port"
    with fabric.journal.ahead(target, f"fcloop target port {CASE_FC_PORT.wwpn}", undo_target):
        write(target, f"{CTL}/add_target_port", CASE_FC_PORT.fcloop_args)
    undo_remote = f"echo {shlex.quote(CASE_FC_PORT.fcloop_args)} > {CTL}/del_remote_port"
    remote = f"{CASE_FC_PORT.fcloop_args},lpwwnn={host.wwnn},lpwwpn={host.wwpn},roles={REMOTE_ROLES}"
    with fabric.journal.ahead(target, f"fcloop remote port {CASE_FC_PORT.wwpn}", undo_remote):
        write(target, f"{CTL}/add_remote_port", remote)
    port = fabric.nvmet.create_port(PortAddress("fc", CASE_FC_PORT.nvme_traddr))
    return CasePort(port, CASE_FC_PORT.nvme_traddr, "")


def parse_fc_traddr(traddr: str) -> FcAddress:
    """``nn-0x…:pn-0x…`` → the port's names."""
    parts = parse_address(traddr.replace(":", ",").replace("-", "="))
    if "nn" not in parts or "pn" not in parts:
        raise DriverError(f"{traddr!r} is not an FC address nn-0x…:pn-0x… (the host's FC controller shows it so)")
    return FcAddress(parts["nn"], parts["pn"])
