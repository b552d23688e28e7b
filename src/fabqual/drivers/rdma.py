"""RDMA endpoints: port state, GID index chosen by type, and soft-RoCE (rxe) devices.

perftest's ``-x`` must name a GID of the right type on both ends (RoCE v2 with
an IPv4-mapped address); the index differs between NICs, drivers and even
boots, so it is chosen from sysfs by :func:`select_gid`, a pure function tested
on captured dumps, never hard-coded.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

from fabqual.drivers.journal import Journal, modprobe
from fabqual.drivers.port_rate import rdma_rate
from fabqual.errors import DriverError, LabError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name
from fabqual.line_rate import PortRate
from fabqual.topology.model import Rnic

SYSFS = "/sys/class/infiniband"
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"

_GID_LINE = re.compile(
    r"^/sys/class/infiniband/(?P<dev>[^/]+)/ports/(?P<port>\d+)/"
    r"(?P<kind>gids|gid_attrs/types|gid_attrs/ndevs)/(?P<index>\d+):(?P<value>.*)$"
)


@dataclass(frozen=True)
class GidEntry:
    device: str
    port: int
    index: int
    gid: str
    type: str  # "RoCE v2", "IB/RoCE v1"
    netdev: str

    @property
    def ipv4(self) -> str | None:
        """The IPv4 address of an IPv4-mapped GID (::ffff:a.b.c.d), else None."""
        try:
            address = ipaddress.IPv6Address(self.gid)
        except ValueError:
            return None
        mapped = address.ipv4_mapped
        return str(mapped) if mapped else None


GID_DUMP_COMMAND = (
    "grep -H . /sys/class/infiniband/*/ports/*/gids/* /sys/class/infiniband/*/ports/*/gid_attrs/types/*"
    " /sys/class/infiniband/*/ports/*/gid_attrs/ndevs/* 2>/dev/null; true"
)


def parse_gid_table(dump: str) -> list[GidEntry]:
    """``grep -H .`` over gids, gid_attrs/types and gid_attrs/ndevs → populated GID entries.

    Unpopulated slots (all-zero GID, or no type because the kernel answers
    EINVAL when reading it) are dropped.
    """
    fields: dict[tuple[str, int, int], dict[str, str]] = {}
    for line in dump.splitlines():
        match = _GID_LINE.match(line.strip())
        if match:
            key = (match["dev"], int(match["port"]), int(match["index"]))
            fields.setdefault(key, {})[match["kind"]] = match["value"].strip()
    entries = []
    for (device, port, index), values in sorted(fields.items()):
        gid = values.get("gids", ZERO_GID)
        if gid == ZERO_GID or "gid_attrs/types" not in values:
            continue
        entries.append(GidEntry(device, port, index, gid, values["gid_attrs/types"], values.get("gid_attrs/ndevs", "")))
    return entries


def select_gid(
    entries: list[GidEntry], device: str, port: int, *, address: str | None = None, gid_type: str = "RoCE v2"
) -> GidEntry:
    """The lowest-index GID of ``gid_type`` with an IPv4-mapped address (``address`` if given)."""
    candidates = [
        e for e in entries if e.device == device and e.port == port and e.type == gid_type and e.ipv4 is not None
    ]
    if address is not None:
        candidates = [e for e in candidates if e.ipv4 == address]
    if not candidates:
        seen = ", ".join(f"{e.index}={e.type}/{e.gid}" for e in entries if e.device == device and e.port == port)
        wanted = f"{gid_type} IPv4-mapped GID" + (f" for {address}" if address else "")
        raise LabError(
            f"{device} port {port} has no {wanted} (GIDs: {seen or 'none'});"
            " give the netdev its IPv4 address and check the port is up"
        )
    return min(candidates, key=lambda e: e.index)


_PORT_STATE = re.compile(r"^\s*state:\s*(?P<state>PORT_\w+)\s*\((?P<code>\d+)\)", re.MULTILINE)
_ACTIVE_MTU = re.compile(r"^\s*active_mtu:\s*(?P<mtu>\d+)", re.MULTILINE)


def parse_port_state(ibv_devinfo: str) -> tuple[str, int | None]:
    """``ibv_devinfo -d DEV -i PORT`` → (state like PORT_ACTIVE, active MTU in bytes)."""
    match = _PORT_STATE.search(ibv_devinfo)
    if not match:
        raise ParseError("ibv_devinfo", "no 'state: PORT_…' line", ibv_devinfo)
    mtu = _ACTIVE_MTU.search(ibv_devinfo)
    return match["state"], int(mtu["mtu"]) if mtu else None


def parse_rate(text: str) -> float | None:
    """``/sys/class/infiniband/DEV/ports/P/rate`` ("25 Gb/sec (1X EDR)", "2.5 Gb/sec (1X SDR)") → Gb/s."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec", text)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class PortFacts:
    device: str
    port: int
    gid: GidEntry
    state: str
    active_mtu: int | None
    rate: PortRate

    @property
    def rate_gbps(self) -> float | None:
        return self.rate.gbps


def port_facts(executor: Executor, device: str, port: int, address: str) -> PortFacts:
    """Check the port is PORT_ACTIVE and pick its RoCE v2 GID for ``address``."""
    info = executor.run(f"ibv_devinfo -d {shlex.quote(device)} -i {port}", timeout=30, check=False)
    if not info.ok:
        raise LabError(f"{executor.node}: ibv_devinfo does not know RDMA device {device}: {info.stderr.strip()}")
    state, mtu = parse_port_state(info.stdout)
    if state != "PORT_ACTIVE":
        raise LabError(
            f"{executor.node}: {device} port {port} is {state}, not PORT_ACTIVE;"
            " check the cable/switch port and the netdev's link (reload the RDMA driver if it stays down)"
        )
    gid = select_gid(parse_gid_table(executor.run(GID_DUMP_COMMAND, timeout=30).stdout), device, port, address=address)
    return PortFacts(device, port, gid, state, mtu, rdma_rate(executor, device, port))


def netdev_with_address(executor: Executor, address: str) -> str | None:
    """The interface that holds ``address`` (no prefix), or None."""
    out = executor.run("ip -o -4 addr show", timeout=30).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3].split("/")[0] == address:
            return plain_name(executor.node, "network interface", parts[1])
    return None


def rdma_links(executor: Executor) -> dict[str, str]:
    """RDMA device → netdev, from ``rdma link show`` ("link rxe0/1 state ACTIVE ... netdev eth1")."""
    out = executor.run("rdma link show", timeout=30, check=False).stdout
    links = {}
    for line in out.splitlines():
        match = re.match(r"^link (?P<dev>[^/\s]+)/\d+ .*?\bnetdev (?P<netdev>\S+)", line)
        if match:
            links[plain_name(executor.node, "RDMA device", match["dev"])] = match["netdev"]
    return links


class SoftRoce:
    """rxe devices on a node's data netdev, created with ``rdma link add`` and deleted on teardown."""

    def __init__(self, executor: Executor, journal: Journal) -> None:
        self.executor = executor
        self.journal = journal

    def ensure(self, name: str, netdev: str) -> str:
        """An rxe device on ``netdev``: an existing one is used (and left alone), else ``name`` is created."""
        modprobe(self.executor, "rdma_rxe")
        for device, dev_netdev in rdma_links(self.executor).items():
            if dev_netdev == netdev:
                log_step(self.executor.node, f"use existing RDMA device {device} on {netdev}")
                return device
        log_step(self.executor.node, f"create rxe device {name} on {netdev}")
        with self.journal.ahead(self.executor, f"rxe device {name}", f"rdma link delete {shlex.quote(name)}"):
            result = self.executor.run(
                f"rdma link add {shlex.quote(name)} type rxe netdev {shlex.quote(netdev)}", timeout=60, check=False
            )
            if not result.ok:
                raise DriverError(
                    f"{self.executor.node}: `rdma link add {name} type rxe netdev {netdev}` failed:"
                    f" {result.stderr.strip()}"
                )
        return name


def ensure_address(executor: Executor, journal: Journal, rnic: Rnic, netdev: str, address: str) -> None:
    """Put the RNIC's address on its data netdev (journaled), unless it is there; refuse if another netdev has it."""
    holder = netdev_with_address(executor, address)
    if holder == netdev:
        return
    if holder is not None:
        raise LabError(
            f"{executor.node}: {address} of RNIC {rnic.name} is on {holder}, not on the data netdev {netdev}"
        )
    assert rnic.address is not None
    log_step(executor.node, f"add {rnic.address} to {netdev}")
    executor.run(f"ip addr add {shlex.quote(rnic.address)} dev {shlex.quote(netdev)}", timeout=30)
    journal.record_command(
        executor,
        f"address {rnic.address} on {netdev}",
        f"ip addr del {shlex.quote(rnic.address)} dev {shlex.quote(netdev)}",
    )
