"""The guest side of a PVRDMA link: one RDMA endpoint per VM, proved to be a real RDMA path.

On a real VM the device is ``vmw_pvrdma0``; the seeds (and VMware's own guest
validation suite) reload ``vmw_pvrdma`` once when ``ibv_devinfo`` does not show
PORT_ACTIVE. In the emulated lab an rxe device on the data netdev stands in for
it. Either way the endpoint is only handed out when its device sits on the data
netdev, is PORT_ACTIVE and has a RoCE v2 GID for the netdev's IPv4 address:
VMware documents that PVRDMA without an RDMA device *silently falls back to a
TCP channel*, and a link that falls back must fail here, not pass slowly.
"""

from __future__ import annotations

import shlex
import time

from fabqual.drivers.journal import Journal
from fabqual.drivers.rdma import parse_port_state, rdma_links
from fabqual.drivers.rdma_endpoint import PORT, PORT_UP_TIMEOUT, rdma_endpoint
from fabqual.errors import DriverError, LabError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.handles.rdma import RdmaEndpoint
from fabqual.topology.model import Rnic

PVRDMA_MODULE = "vmw_pvrdma"
PVRDMA_DEVICE = "vmw_pvrdma0"

# Tool → Debian package that brings it (RHEL: rdma-core / libibverbs-utils / perftest).
TOOLS: dict[str, str] = {
    "rdma": "iproute2",
    "ibv_devinfo": "ibverbs-utils (rdma-core)",
    "ib_write_bw": "perftest",
    "ib_write_lat": "perftest",
    "ib_send_bw": "perftest",
}

TCP_FALLBACK = "PVRDMA would silently fall back to its TCP channel"


def require_tools(executor: Executor) -> None:
    """rdma-core and perftest are installed; a missing one is a broken lab, named with its package."""
    probe = "for t in " + " ".join(TOOLS) + '; do command -v "$t" >/dev/null || echo "$t"; done'
    missing = executor.run(probe, timeout=30).stdout.split()
    if missing:
        packages = sorted({TOOLS[t] for t in missing if t in TOOLS})
        raise LabError(f"{executor.node}: {', '.join(missing)} not installed; install {', '.join(packages)} in the VM")


def port_state(executor: Executor, device: str, port: int = PORT) -> str | None:
    """``PORT_ACTIVE``/``PORT_DOWN``/… of a device's port, or None when ``ibv_devinfo`` does not know the device."""
    info = executor.run(f"ibv_devinfo -d {shlex.quote(device)} -i {port}", timeout=30, check=False)
    if not info.ok:
        return None
    try:
        return parse_port_state(info.stdout)[0]
    except ParseError:
        return None


def require_rdma_path(executor: Executor, device: str, netdev: str, port: int = PORT) -> None:
    """The TCP-fallback check: ``device`` exists, is bound to ``netdev`` and its port is PORT_ACTIVE."""
    links = rdma_links(executor)
    if device not in links:
        on_netdev = [d for d, n in links.items() if n == netdev]
        seen = ", ".join(f"{d} on {n}" for d, n in sorted(links.items())) or "none"
        raise DriverError(
            f"{executor.node}: no RDMA device {device} (RDMA devices: {seen})"
            + (f"; {netdev} carries {', '.join(on_netdev)} instead" if on_netdev else f" on {netdev}")
            + f"; {TCP_FALLBACK}: add a PVRDMA adapter to the VM and load {PVRDMA_MODULE}"
        )
    if links[device] != netdev:
        raise DriverError(
            f"{executor.node}: RDMA device {device} is on {links[device]}, not on the data netdev {netdev};"
            f" {TCP_FALLBACK} for traffic on {netdev}: fix the rnic's netdev in the topology"
        )
    state = port_state(executor, device, port)
    if state != "PORT_ACTIVE":
        raise DriverError(
            f"{executor.node}: RDMA device {device} port {port} is {state or 'unreadable by ibv_devinfo'},"
            f" not PORT_ACTIVE; {TCP_FALLBACK}: check the host's RDMA uplink and the VM's PVRDMA adapter"
        )


def ensure_pvrdma_active(executor: Executor, device: str = PVRDMA_DEVICE, port: int = PORT) -> None:
    """PORT_ACTIVE on a real VM's PVRDMA device, after one ``vmw_pvrdma`` reload if needed (the seeds' fix)."""
    state = port_state(executor, device, port)
    if state == "PORT_ACTIVE":
        return
    log_step(executor.node, f"{device} port {port} is {state or 'missing'}: reload {PVRDMA_MODULE}")
    reload = executor.run(f"modprobe -r {PVRDMA_MODULE} && modprobe {PVRDMA_MODULE}", timeout=120, check=False)
    if not reload.ok:
        why = (reload.stderr or reload.stdout).strip().splitlines()
        raise DriverError(
            f"{executor.node}: RDMA device {device} is {state or 'missing'} and reloading {PVRDMA_MODULE} failed"
            f" ({why[-1] if why else f'exit {reload.exit_status}'}); {TCP_FALLBACK}:"
            " add a PVRDMA adapter to the VM and install a kernel with vmw_pvrdma"
        )
    deadline = time.monotonic() + PORT_UP_TIMEOUT
    while (state := port_state(executor, device, port)) != "PORT_ACTIVE":
        if time.monotonic() > deadline:
            raise DriverError(
                f"{executor.node}: RDMA device {device} port {port} is {state or 'missing'} even after reloading"
                f" {PVRDMA_MODULE}; {TCP_FALLBACK}: check the host's RDMA device and the vDS uplink"
            )
        time.sleep(1.0)


def guest_endpoint(executor: Executor, rnic: Rnic, journal: Journal) -> RdmaEndpoint:
    """One VM's RDMA end, ready for perftest: tools, address, active device on the data netdev, GID by type."""
    require_tools(executor)
    return rdma_endpoint(
        executor,
        rnic,
        journal,
        default_device=PVRDMA_DEVICE,
        activate=ensure_pvrdma_active,
        check_path=require_rdma_path,
    )
