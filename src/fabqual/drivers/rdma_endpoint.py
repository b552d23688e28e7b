"""One RDMA endpoint brought up for traffic: the one bring-up every RDMA link uses.

From a topology RNIC to an :class:`~fabqual.handles.RdmaEndpoint` perftest and
nvme-cli can use: the data netdev (declared or found by its address) up with the
address, the RDMA device on it (an rxe device in the emulated lab, the declared
one, or the link's ``default_device`` / whatever device sits on the netdev), then
— once the port is PORT_ACTIVE and its RoCE v2 GID for the address is populated
(rxe takes a moment) — the device, port, GID index, rate and MTU.

A link adds what only it needs through two hooks: ``activate`` (PVRDMA reloads
``vmw_pvrdma`` once when the port is not active) and ``check_path`` (PVRDMA
refuses a device that is not on the data netdev: it would fall back to TCP).
Everything it changes is journaled.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

from fabqual.drivers.journal import Journal
from fabqual.drivers.rdma import PortFacts, SoftRoce, ensure_address, netdev_with_address, port_facts, rdma_links
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name
from fabqual.handles.rdma import RdmaEndpoint
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.model import Rnic

PORT = 1
PORT_UP_TIMEOUT = 30.0  # rxe and a reloaded vmw_pvrdma take a few seconds to populate GIDs
SOFT_ROCE_DEVICE = "rxe0"

# (executor, device) → None, or (executor, device, netdev) → None; raise when the device cannot serve.
Activate = Callable[[Executor, str], None]
CheckPath = Callable[[Executor, str, str], None]


def rdma_endpoint(
    executor: Executor,
    rnic: Rnic,
    journal: Journal,
    *,
    default_device: str | None = None,
    activate: Activate | None = None,
    check_path: CheckPath | None = None,
) -> RdmaEndpoint:
    """``rnic`` of ``executor``'s node ready for traffic (see the module's docstring)."""
    if rnic.address is None:
        raise LabError(
            f"{executor.node}: RNIC {rnic.name} has no address in the topology; RoCE v2 needs an IPv4 address"
        )
    address = rnic.address.split("/")[0]
    netdev = data_netdev(executor, rnic, address)
    ensure_address(executor, journal, rnic, netdev, address)
    if executor.run(f"ip -o link show dev {shlex.quote(netdev)} up", timeout=30).stdout.strip() == "":
        log_step(executor.node, f"set {netdev} up")
        journal.record_command(executor, f"{netdev} up", f"ip link set dev {shlex.quote(netdev)} down")
        executor.run(f"ip link set dev {shlex.quote(netdev)} up", timeout=30)
    if rnic.emulation == "rxe":
        name = rnic.rdma_device if rnic.rdma_device != DISCOVER else SOFT_ROCE_DEVICE
        device = SoftRoce(executor, journal).ensure(name, netdev)
    else:
        device = (
            rnic.rdma_device if rnic.rdma_device != DISCOVER else default_device or device_on(executor, rnic, netdev)
        )
        if activate is not None:
            activate(executor, device)
    check = (lambda: check_path(executor, device, netdev)) if check_path is not None else None
    facts = wait_port_active(executor, device, PORT, address, check=check)
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


def data_netdev(executor: Executor, rnic: Rnic, address: str) -> str:
    """The RNIC's netdev: declared, or the interface holding ``address``; it must exist."""
    netdev = rnic.netdev if rnic.netdev != DISCOVER else netdev_with_address(executor, address)
    if netdev is None:
        raise LabError(
            f"{executor.node}: no interface holds {address} for RNIC {rnic.name}; set netdev: in the topology"
        )
    where = shlex.quote(f"/sys/class/net/{plain_name(executor.node, 'netdev', netdev)}")
    if not executor.run(f"test -d {where}", timeout=30, check=False).ok:
        raise LabError(
            f"{executor.node}: RNIC {rnic.name}'s netdev {netdev} does not exist; fix netdev: in the topology"
        )
    return netdev


def device_on(executor: Executor, rnic: Rnic, netdev: str) -> str:
    """The RDMA device bound to ``netdev`` (``rdma link``)."""
    by_netdev = {n: d for d, n in rdma_links(executor).items()}
    if netdev not in by_netdev:
        raise LabError(f"{executor.node}: no RDMA device on {netdev} (is {rnic.driver} loaded?)")
    return by_netdev[netdev]


def wait_port_active(
    executor: Executor, device: str, port: int, address: str, *, check: Callable[[], None] | None = None
) -> PortFacts:
    """Port facts once ``check`` passes and the port is PORT_ACTIVE with its GID populated."""
    deadline = time.monotonic() + PORT_UP_TIMEOUT
    while True:
        try:
            if check is not None:
                check()
            return port_facts(executor, device, port, address)
        except (DriverError, LabError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
