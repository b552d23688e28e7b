"""Read a port's line rate on its node: FC ``fc_host`` speed, RDMA port ``rate``, netdev ``speed``.

Each reader returns a :class:`~fabqual.line_rate.PortRate` that says what it read
where; a rate that cannot be read (link down, no such file, a value the kernel
calls unknown) is kept as the reason, named with node and port, never a guess.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from fabqual.drivers.fc_host import FcHostPort
from fabqual.errors import ParseError
from fabqual.executors.base import Executor
from fabqual.executors.names import plain_name
from fabqual.line_rate import PortRate
from fabqual.thresholds import fc_line_rate_gbps, ib_line_rate_gbps, net_line_rate_gbps
from fabqual.topology.model import Hba


def _sysfs_rate(
    executor: Executor, port: str, path: str, parse: Callable[[str], float | None], none_means: str
) -> PortRate:
    """The rate ``parse`` finds in the sysfs file ``path``, or None and why (``speed`` of a netdev
    whose link is down is EINVAL; a value the kernel calls unknown is ``none_means``)."""
    result = executor.run(f"cat {shlex.quote(path)}", timeout=30, check=False)
    if not result.ok:
        why = (result.stderr or result.stdout).strip() or f"cat exited {result.exit_status}"
        return PortRate(executor.node, port, None, f"{path} unreadable: {why}")
    text = result.stdout.strip()
    try:
        gbps = parse(text)
    except ParseError as error:
        return PortRate(executor.node, port, None, str(error))
    if gbps is None:
        return PortRate(executor.node, port, None, f"{path} = {text}: {none_means}")
    return PortRate(executor.node, port, gbps, f"{path} = {text}")


def netdev_rate(executor: Executor, netdev: str) -> PortRate:
    """An Ethernet port's rate from ``/sys/class/net/IF/speed`` (Mb/s; -1 when the driver reports none)."""
    path = f"/sys/class/net/{plain_name(executor.node, 'netdev', netdev)}/speed"
    return _sysfs_rate(executor, f"netdev {netdev}", path, net_line_rate_gbps, "the driver reports no speed")


def rdma_rate(executor: Executor, device: str, port: int) -> PortRate:
    """An RDMA port's data rate from ``/sys/class/infiniband/DEV/ports/P/rate``."""
    path = f"/sys/class/infiniband/{plain_name(executor.node, 'RDMA device', device)}/ports/{int(port)}/rate"
    return _sysfs_rate(executor, f"{device} port {port}", path, ib_line_rate_gbps, "no rate (port down?)")


def fc_rate(node: str, port: FcHostPort) -> PortRate:
    """An FC port's data rate from its ``fc_host`` speed (already read with the port).

    Native FC speeds are nominal ("16 Gbit" carries 12.8 Gb/s of data,
    :func:`~fabqual.thresholds.fc_line_rate_gbps`); an FCoE port's speed is its
    Ethernet's, taken as printed.
    """
    name = f"fc_host {port.host} ({port.wwpn})"
    read = f"/sys/class/fc_host/{port.host}/speed = {port.speed}"
    fcoe = port.symbolic_name.lower().startswith("fcoe")
    try:
        gbps = fc_line_rate_gbps(port.speed)
    except ParseError as error:
        return PortRate(node, name, None, str(error))
    if gbps is None:
        return PortRate(node, name, None, f"{read}: no speed negotiated (port {port.port_state})")
    return PortRate(node, name, gbps / 0.8 if fcoe else gbps, read + (" (FCoE: the Ethernet rate)" if fcoe else ""))


def fcloop_rate(executor: Executor, hba: Hba) -> PortRate:
    """An nvme-fcloop port has no speed of its own: the emulated HBA names a netdev to read instead."""
    if hba.netdev is None:
        return PortRate(
            executor.node,
            f"HBA {hba.name} (nvme-fcloop)",
            None,
            "nvme-fcloop ports report no speed; give the HBA a netdev: whose speed stands in for it",
        )
    return netdev_rate(executor, hba.netdev)
