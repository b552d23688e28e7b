"""Read a port's line rate on its node: FC ``fc_host`` speed, RDMA port ``rate``, netdev ``speed``.

Each reader returns a :class:`~fabqual.line_rate.PortRate` that says what it read
where; a rate that cannot be read (link down, no such file, a value the kernel
calls unknown) is kept as the reason, named with node and port, never a guess.
"""

from __future__ import annotations

import shlex

from fabqual.drivers.fc_host import FcHostPort
from fabqual.errors import ParseError
from fabqual.executors.base import Executor
from fabqual.executors.names import plain_name
from fabqual.line_rate import PortRate
from fabqual.thresholds import fc_line_rate_gbps, ib_line_rate_gbps, net_line_rate_gbps
from fabqual.topology.model import Hba


def _read(executor: Executor, path: str) -> tuple[str | None, str]:
    """The file's text, or None and why not (``speed`` of a netdev whose link is down is EINVAL)."""
    result = executor.run(f"cat {shlex.quote(path)}", timeout=30, check=False)
    if result.ok:
        return result.stdout.strip(), ""
    return None, (result.stderr or result.stdout).strip() or f"cat exited {result.exit_status}"


def netdev_rate(executor: Executor, netdev: str) -> PortRate:
    """An Ethernet port's rate from ``/sys/class/net/IF/speed`` (Mb/s; -1 when the driver reports none)."""
    path = f"/sys/class/net/{plain_name(executor.node, 'netdev', netdev)}/speed"
    text, why = _read(executor, path)
    port = f"netdev {netdev}"
    if text is None:
        return PortRate(executor.node, port, None, f"{path} unreadable: {why}")
    try:
        gbps = net_line_rate_gbps(text)
    except ParseError as error:
        return PortRate(executor.node, port, None, str(error))
    if gbps is None:
        return PortRate(executor.node, port, None, f"{path} = {text}: the driver reports no speed (link down?)")
    return PortRate(executor.node, port, gbps, f"{path} = {text}")


def rdma_rate(executor: Executor, device: str, port: int) -> PortRate:
    """An RDMA port's data rate from ``/sys/class/infiniband/DEV/ports/P/rate``."""
    path = f"/sys/class/infiniband/{plain_name(executor.node, 'RDMA device', device)}/ports/{int(port)}/rate"
    text, why = _read(executor, path)
    name = f"{device} port {port}"
    if text is None:
        return PortRate(executor.node, name, None, f"{path} unreadable: {why}")
    try:
        gbps = ib_line_rate_gbps(text)
    except ParseError as error:
        return PortRate(executor.node, name, None, str(error))
    if gbps is None:
        return PortRate(executor.node, name, None, f"{path} = {text}: no rate (port down?)")
    return PortRate(executor.node, name, gbps, f"{path} = {text}")


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
