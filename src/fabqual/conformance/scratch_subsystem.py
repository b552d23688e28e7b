"""A case's own subsystem with a namespace: the link's scratch device exported once more, on the link's ports.

Cases that need I/O (timers, ANA) must not change the link's own subsystem,
which later rows measure. They export the device the link's subsystem
exports — a declared scratch device, proven safe to write when the link came
up (:mod:`fabqual.drivers.scratch`) — in a subsystem of their own
(``conf-<purpose>``), journaled like every other change of the case. The
kernel opens the device once per subsystem; nothing else writes it while a
case runs (rows run one at a time).
"""

from __future__ import annotations

import shlex

from fabqual.conformance.fabric import NvmeFabric, nvmet_ports_of
from fabqual.drivers.journal import sh, write
from fabqual.drivers.nvmet import ROOT, NvmetTarget
from fabqual.errors import DriverError
from fabqual.executors.base import log_step


def scratch_device_of(fabric: NvmeFabric) -> str:
    """The device the link's own subsystem exports as its first namespace."""
    sub = shlex.quote(f"{ROOT}/subsystems/{fabric.subsystem_nqn}")
    paths = fabric.target.run(f"cat {sub}/namespaces/*/device_path 2>/dev/null; true", timeout=30).stdout.split()
    if not paths:
        raise DriverError(f"{fabric.target.node}: {fabric.subsystem_nqn} exports no namespace; is the target nvmet?")
    return paths[0]


def exporting_ports(fabric: NvmeFabric) -> list[tuple[str, str]]:
    """(port id, trsvcid) of every nvmet port exporting the link's subsystem on the link's transport address."""
    ports = [
        (port, trsvcid if trtype != "fc" else "")
        for port, trtype, traddr, trsvcid in nvmet_ports_of(fabric.target, fabric.subsystem_nqn)
        if trtype == fabric.path.trtype and traddr == fabric.path.traddr
    ]
    return sorted(ports, key=lambda p: p[0] != fabric.port_id)  # the link's own path first


def own_subsystem(fabric: NvmeFabric, purpose: str, ports: list[str], ana_group: int | None = None) -> str:
    """Subsystem ``conf-<purpose>`` exporting the link's scratch device as namespace 1 on ``ports``.

    ``ana_group``: the namespace's ANA group, made on each port first (a group
    of the case's own, so changing its state touches no other namespace).
    """
    device = scratch_device_of(fabric)
    nvmet = NvmetTarget(fabric.target, fabric.journal, scratch_paths=(device,))
    nqn = fabric.nqn(purpose)
    nvmet.remove_stale(nqn)
    if ana_group is not None:
        for port in ports:
            group = f"{ROOT}/ports/{port}/ana_groups/{ana_group}"
            log_step(fabric.target.node, f"create ANA group {ana_group} on nvmet port {port}")
            with fabric.journal.ahead(
                fabric.target, f"ANA group {ana_group} of port {port}", f"rmdir {shlex.quote(group)}"
            ):
                sh(fabric.target, f"mkdir {shlex.quote(group)}")
            write(fabric.target, f"{group}/ana_state", "optimized")  # a new group starts inaccessible
    nvmet.create_subsystem(nqn, allow_any_host=True)
    nvmet.add_namespace(nqn, 1, device)
    if ana_group is not None:
        write(fabric.target, f"{ROOT}/subsystems/{nqn}/namespaces/1/ana_grpid", str(ana_group))
    for port in ports:
        nvmet.link_port(port, nqn)
    return nqn


def unlink(fabric: NvmeFabric, nqn: str, port: str) -> None:
    """Stop exporting the case's subsystem on ``port`` (the journal's ``rm -f`` of the link still holds)."""
    NvmetTarget(fabric.target, fabric.journal, scratch_paths=()).unlink_port(port, nqn)


def relink(fabric: NvmeFabric, nqn: str, port: str) -> None:
    NvmetTarget(fabric.target, fabric.journal, scratch_paths=()).relink_port(port, nqn)
