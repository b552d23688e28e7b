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
from fabqual.drivers.rdma import (
    PortFacts,
    SoftRoce,
    ensure_address,
    netdev_with_address,
    parse_port_state,
    port_facts,
    rdma_links,
)
from fabqual.errors import DriverError, LabError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name
from fabqual.links.handles import RdmaEndpoint
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.model import Rnic

PVRDMA_MODULE = "vmw_pvrdma"
PVRDMA_DEVICE = "vmw_pvrdma0"
PORT = 1
PORT_UP_TIMEOUT = 30.0  # rxe and a reloaded vmw_pvrdma take a few seconds to populate GIDs

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


def _data_netdev(executor: Executor, rnic: Rnic, address: str) -> str:
    netdev = rnic.netdev if rnic.netdev != DISCOVER else netdev_with_address(executor, address)
    if netdev is None:
        raise LabError(
            f"{executor.node}: no interface holds {address} for RNIC {rnic.name}; set netdev: in the topology"
        )
    where = shlex.quote(f"/sys/class/net/{plain_name(executor.node, 'netdev', netdev)}")
    if executor.run(f"test -d {where}", timeout=30, check=False).exit_status != 0:
        raise LabError(
            f"{executor.node}: RNIC {rnic.name}'s netdev {netdev} does not exist; fix netdev: in the topology"
        )
    return netdev


def _facts_when_ready(executor: Executor, device: str, netdev: str, address: str) -> PortFacts:
    """Path checked (device on netdev, PORT_ACTIVE), then the RoCE v2 GID of ``address`` (waits for rxe)."""
    deadline = time.monotonic() + PORT_UP_TIMEOUT
    while True:
        try:
            require_rdma_path(executor, device, netdev)
            return port_facts(executor, device, PORT, address)
        except (DriverError, LabError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def guest_endpoint(executor: Executor, rnic: Rnic, journal: Journal) -> RdmaEndpoint:
    """One VM's RDMA end, ready for perftest: tools, address, active device on the data netdev, GID by type."""
    if rnic.address is None:
        raise LabError(
            f"{executor.node}: RNIC {rnic.name} has no address in the topology; RoCE v2 needs an IPv4 address"
        )
    require_tools(executor)
    address = rnic.address.split("/")[0]
    netdev = _data_netdev(executor, rnic, address)
    ensure_address(executor, journal, rnic, netdev, address)
    if executor.run(f"ip -o link show dev {shlex.quote(netdev)} up", timeout=30).stdout.strip() == "":
        log_step(executor.node, f"set {netdev} up")
        executor.run(f"ip link set dev {shlex.quote(netdev)} up", timeout=30)
        journal.record_command(executor, f"{netdev} up", f"ip link set dev {shlex.quote(netdev)} down")
    if rnic.emulation == "rxe":
        # The emulated lab: rxe on the data netdev stands in for vmw_pvrdma0.
        name = rnic.rdma_device if rnic.rdma_device != DISCOVER else "rxe0"
        device = SoftRoce(executor, journal).ensure(name, netdev)
    else:
        device = rnic.rdma_device if rnic.rdma_device != DISCOVER else PVRDMA_DEVICE
        ensure_pvrdma_active(executor, device)
    facts = _facts_when_ready(executor, device, netdev, address)
    return RdmaEndpoint(
        executor=executor,
        device=device,
        port=PORT,
        gid_index=facts.gid.index,
        address=address,
        netdev=netdev,
        rate_gbps=facts.rate_gbps,
        rate=facts.rate,
        active_mtu=facts.active_mtu,
    )
