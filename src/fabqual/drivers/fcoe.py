"""Software FCoE (``fcoe`` + ``libfc``): an FC port on an Ethernet interface, VN2VN mode.

A controller is created with ``echo IF > /sys/bus/fcoe/ctlr_create``; it comes up
disabled, already holding its ``fc_host`` (WWPN ``0x2000<mac>``), so the link
driver can read the initiator's WWPN, configure the target's ACL, and only then
enable the initiator (the ORDER rule, docs/emulated-lab.md). Everything is journaled: teardown
disables and destroys exactly the controllers created here.

:func:`parse_remote_ports` is pure, tested on dumps captured in the emulated lab.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from fabqual.drivers.fc_host import FcHostPort, fc_hosts
from fabqual.drivers.journal import Journal, exists, modprobe, write
from fabqual.drivers.sysfs_dump import group_by_device
from fabqual.errors import DriverError, LabError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name

BUS = "/sys/bus/fcoe"
REMOTE_ATTRIBUTES = ("port_name", "node_name", "port_state", "roles", "scsi_target_id")
REMOTE_DUMP = (
    "grep -H . " + " ".join(f"/sys/class/fc_remote_ports/*/{a}" for a in REMOTE_ATTRIBUTES) + " 2>/dev/null; true"
)
_REMOTE_LINE = re.compile(r"^/sys/class/fc_remote_ports/(?P<rport>rport-\d+:[^/]+)/(?P<attr>[a-z_]+):(?P<value>.*)$")


@dataclass(frozen=True)
class FcoeController:
    """One FCoE controller and the FC port it gives the node."""

    ctlr: str  # ctlr_0
    netdev: str
    port: FcHostPort

    @property
    def host(self) -> str:
        return self.port.host

    @property
    def wwpn(self) -> str:
        return self.port.wwpn


@dataclass(frozen=True)
class RemotePort:
    """An FC remote port as ``/sys/class/fc_remote_ports`` shows it."""

    rport: str  # rport-0:0-0
    host: str  # host0
    wwpn: str
    wwnn: str
    port_state: str
    roles: str
    scsi_target_id: int

    @property
    def is_target(self) -> bool:
        # -1 means the SCSI midlayer never attached a target (see the ORDER rule, docs/emulated-lab.md).
        return "FCP Target" in self.roles and self.scsi_target_id >= 0 and self.port_state == "Online"


def colon_wwn(wwn: str) -> str:
    """``0x2000525400770001`` → ``20:00:52:54:00:77:00:01`` (LIO's tcm_fc spelling)."""
    digits = wwn.lower().removeprefix("0x").replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{16}", digits):
        raise DriverError(f"{wwn!r} is not a WWN (8 bytes of hex)")
    return ":".join(digits[i : i + 2] for i in range(0, 16, 2))


def parse_remote_ports(dump: str) -> list[RemotePort]:
    """``grep -H .`` output of the fc_remote_ports attributes → records, sorted by name."""
    values = group_by_device(dump, "rport", _REMOTE_LINE)
    ports = []
    for name in sorted(values):
        attrs = values[name]
        try:
            target_id = int(attrs.get("scsi_target_id", ""))
        except ValueError:
            raise ParseError("fc_remote_ports sysfs", f"{name} has no scsi_target_id", dump) from None
        ports.append(
            RemotePort(
                rport=name,
                host=f"host{name.removeprefix('rport-').partition(':')[0]}",  # rport-H:B-R: a port seen by host H
                wwpn=attrs.get("port_name", ""),
                wwnn=attrs.get("node_name", ""),
                port_state=attrs.get("port_state", "unknown"),
                roles=attrs.get("roles", ""),
                scsi_target_id=target_id,
            )
        )
    return ports


def remote_ports(executor: Executor, host: str | None = None) -> list[RemotePort]:
    ports = parse_remote_ports(executor.run(REMOTE_DUMP, timeout=30).stdout)
    return [p for p in ports if host is None or p.host == host]


class SoftFcoe:
    """FCoE controllers on one node, changed only through journaled steps."""

    def __init__(self, executor: Executor, journal: Journal) -> None:
        self.executor = executor
        self.journal = journal

    def _ctlr_of(self, netdev: str) -> str | None:
        where = shlex.quote(f"/sys/class/net/{plain_name(self.executor.node, 'netdev', netdev)}")
        out = self.executor.run(f"ls -d {where}/ctlr_* 2>/dev/null; true", timeout=30).stdout.split()
        return plain_name(self.executor.node, "FCoE controller", out[0].rsplit("/", 1)[-1]) if out else None

    def _host_of(self, ctlr: str) -> str:
        out = self.executor.run(f"ls {shlex.quote(f'{BUS}/devices/{ctlr}')}", timeout=30).stdout.split()
        hosts = [name for name in out if re.fullmatch(r"host\d+", name)]
        if not hosts:
            raise DriverError(f"{self.executor.node}: FCoE controller {ctlr} has no SCSI host under {BUS}/devices")
        return hosts[0]

    def remove_stale(self, netdev: str) -> None:
        """Destroy a controller an interrupted run left on ``netdev`` (one interface holds one)."""
        ctlr = self._ctlr_of(netdev)
        if ctlr is None:
            return
        log_step(self.executor.node, f"destroy stale FCoE controller {ctlr} on {netdev} left by an earlier run")
        self._destroy(ctlr, netdev)

    def _destroy(self, ctlr: str, netdev: str) -> None:
        self.executor.run(_destroy_command(ctlr, netdev))

    def create(self, netdev: str, *, mode: str = "vn2vn") -> FcoeController:
        """A disabled controller on ``netdev`` in ``mode``, with its fc_host read back."""
        modprobe(self.executor, "fcoe")
        if not exists(self.executor, f"{BUS}/ctlr_create"):
            raise LabError(f"{self.executor.node}: {BUS}/ctlr_create is missing after loading fcoe")
        self.remove_stale(netdev)
        self.executor.run(f"ip link set dev {shlex.quote(netdev)} up", timeout=30)
        write(self.executor, f"{BUS}/ctlr_create", netdev)
        ctlr = self._ctlr_of(netdev)
        if ctlr is None:
            raise DriverError(f"{self.executor.node}: no FCoE controller appeared on {netdev} after ctlr_create")
        self.journal.record(
            self.executor.node,
            f"FCoE controller {ctlr} on {netdev}",
            lambda: self._destroy(ctlr, netdev),
            replay=_destroy_command(ctlr, netdev),
            executor=self.executor,
        )
        # The kernel's own spelling ("VN2VN", "Fabric", as reading the file prints it): 6.12 matches it
        # exactly (sysfs_match_string; "vn2vn" fails with EIO there), 5.10 and 6.1 ignore case.
        write(self.executor, f"{BUS}/devices/{ctlr}/mode", _MODE_NAMES.get(mode.lower(), mode))
        host = self._host_of(ctlr)
        ports = [p for p in fc_hosts(self.executor) if p.host == host]
        if not ports:
            raise DriverError(f"{self.executor.node}: FCoE controller {ctlr} has no /sys/class/fc_host/{host}")
        return FcoeController(ctlr, netdev, ports[0])

    def enable(self, controller: FcoeController, *, timeout: float = 30.0) -> FcoeController:
        """Enable the controller and wait until its port is Online (VN2VN needs no switch)."""
        write(self.executor, f"{BUS}/devices/{controller.ctlr}/enabled", "1")
        deadline = time.monotonic() + timeout
        while True:
            ports = [p for p in fc_hosts(self.executor) if p.host == controller.host]
            if ports and ports[0].online:
                return FcoeController(controller.ctlr, controller.netdev, ports[0])
            if time.monotonic() > deadline:
                state = ports[0].port_state if ports else "gone"
                raise DriverError(
                    f"{self.executor.node}: FCoE port {controller.host} on {controller.netdev} is {state},"
                    f" not Online, {timeout:.0f} s after enabling {controller.ctlr}; is the data link up?"
                )
            time.sleep(0.5)

    def wait_target(self, controller: FcoeController, wwpn: str, *, timeout: float = 30.0) -> RemotePort:
        """The remote port ``wwpn`` once it is an attached FCP target of this controller's host."""
        return wait_fcp_target(
            self.executor,
            controller.host,
            wwpn,
            timeout=timeout,
            hint="was the target configured before this controller was enabled, and is tcm_fc kept off this node?",
        )


def wait_fcp_target(executor: Executor, host: str, wwpn: str, *, timeout: float = 30.0, hint: str) -> RemotePort:
    """The remote port ``wwpn`` once it is an attached FCP target of ``host``; ``hint`` says what to check."""
    deadline = time.monotonic() + timeout
    while True:
        ports = [p for p in remote_ports(executor, host) if p.wwpn == wwpn.lower()]
        if ports and ports[0].is_target:
            return ports[0]
        if time.monotonic() > deadline:
            seen = ", ".join(f"{p.wwpn} {p.port_state} id {p.scsi_target_id} ({p.roles})" for p in ports)
            raise DriverError(
                f"{executor.node}: remote port {wwpn} is not an attached FCP target of {host}"
                f" after {timeout:.0f} s (seen: {seen or 'nothing'}); {hint}"
            )
        time.sleep(0.5)


def fcoe_state(executor: Executor) -> list[str]:
    """FCoE controllers present on a node (for leak checks)."""
    out = executor.run(f"ls {BUS}/devices 2>/dev/null; true", timeout=30).stdout
    return sorted(out.split())


_MODE_NAMES = {"vn2vn": "VN2VN", "fabric": "Fabric"}


def _destroy_command(ctlr: str, netdev: str) -> str:
    return (
        f"echo 0 > {BUS}/devices/{shlex.quote(ctlr)}/enabled 2>/dev/null;"
        f" echo {shlex.quote(netdev)} > {BUS}/ctlr_destroy"
    )
