"""Fibre Channel HBA ports from ``/sys/class/fc_host``: WWNN, WWPN, state, speed.

:func:`parse_fc_hosts` is pure (a dump of the attribute files in, records out)
so it is tested on dumps captured from real and FCoE ports; :func:`fc_hosts`
makes the dump on a node. :func:`resolve_port` finds a topology ``Hba`` among
them (:func:`pick_port` is its pure half). :func:`qlini_mode` and
:func:`target_mode_problem` tell whether a QLogic port may be an LIO target (tcm_qla2xxx).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from fabqual.drivers.sysfs_dump import group_by_device
from fabqual.errors import LabError, ParseError
from fabqual.executors.base import Executor
from fabqual.executors.names import plain_name
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.model import Hba, normalize_wwn

ATTRIBUTES = ("node_name", "port_name", "port_state", "speed", "port_type", "fabric_name", "symbolic_name")

# One line per attribute: "/sys/class/fc_host/host3/port_name:0x21000024ff7c1a2b" (as grep -H prints it).
_LINE = re.compile(r"^/sys/class/fc_host/(?P<host>[^/]+)/(?P<attr>[a-z_]+):(?P<value>.*)$")
_WWN = re.compile(r"^0x[0-9a-f]{16}$")
_SPEED = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>Gbit|Mbit)$")

# qla2xxx's initiator mode: "enabled" (the default) is initiator only; "disabled",
# "exclusive" and "dual" let tcm_qla2xxx register the port as a target.
QLINI_MODE = "/sys/module/qla2xxx/parameters/qlini_mode"
TARGET_MODE_FIX = (
    "load qla2xxx with qlini_mode=disabled (or dual) on this node"
    " (`options qla2xxx qlini_mode=disabled` in /etc/modprobe.d, then reload qla2xxx) and load tcm_qla2xxx"
)

DUMP_COMMAND = "grep -H . " + " ".join(f"/sys/class/fc_host/*/{a}" for a in ATTRIBUTES) + " 2>/dev/null; true"


@dataclass(frozen=True)
class FcHostPort:
    host: str  # host3
    wwnn: str
    wwpn: str
    port_state: str  # Online, Linkdown, ...
    speed: str  # as printed: "16 Gbit", "unknown"
    port_type: str = ""
    symbolic_name: str = ""

    @property
    def online(self) -> bool:
        return self.port_state == "Online"

    @property
    def speed_gbps(self) -> float | None:
        """Line rate in Gb/s, None when the port does not report one (link down, FCoE "unknown")."""
        first = self.speed.split(",")[0].strip()
        match = _SPEED.match(first)
        if not match:
            return None
        value = float(match["n"])
        return value if match["unit"] == "Gbit" else value / 1000


def parse_fc_hosts(dump: str) -> list[FcHostPort]:
    """``grep -H .`` output of the fc_host attributes → one record per host, sorted by name."""
    values = group_by_device(dump, "host", _LINE)
    ports = []
    for host in sorted(values, key=lambda h: (len(h), h)):
        attrs = values[host]
        for key in ("node_name", "port_name"):
            if not _WWN.match(attrs.get(key, "")):
                raise ParseError("fc_host sysfs", f"{host} has no valid {key} (got {attrs.get(key)!r})", dump)
        ports.append(
            FcHostPort(
                host=host,
                wwnn=attrs["node_name"],
                wwpn=attrs["port_name"],
                port_state=attrs.get("port_state", "unknown"),
                speed=attrs.get("speed", "unknown"),
                port_type=attrs.get("port_type", ""),
                symbolic_name=attrs.get("symbolic_name", ""),
            )
        )
    return ports


def fc_hosts(executor: Executor) -> list[FcHostPort]:
    return parse_fc_hosts(executor.run(DUMP_COMMAND, timeout=30).stdout)


def fc_host_by_wwpn(executor: Executor, wwpn: str) -> FcHostPort | None:
    for port in fc_hosts(executor):
        if port.wwpn == wwpn.lower():
            return port
    return None


def pick_port(ports: list[FcHostPort], hba: Hba, node: str) -> FcHostPort:
    """The port of ``hba`` among ``ports``: its declared WWPN, or the one Online port for ``wwpn: discover``.

    The port must be Online; every refusal is a broken lab, named with what to do.
    """
    if hba.wwpn != DISCOVER:
        wanted = normalize_wwn(hba.wwpn)
        matching = [p for p in ports if p.wwpn == wanted]
        if not matching:
            seen = ", ".join(p.wwpn for p in ports) or "none"
            raise LabError(f"{node}: HBA {hba.name} WWPN {wanted} not in /sys/class/fc_host (seen: {seen})")
    else:
        matching = [p for p in ports if p.online]
        if len(matching) != 1:
            raise LabError(
                f"{node}: HBA {hba.name} has wwpn: discover but {len(matching)} fc_host ports are Online;"
                " write the WWPN into the topology"
            )
    port = matching[0]
    if not port.online:
        raise LabError(
            f"{node}: FC port {port.host} ({port.wwpn}) is {port.port_state}, not Online; check cabling/zoning"
        )
    return port


def resolve_port(executor: Executor, hba: Hba) -> FcHostPort:
    """The Online ``/sys/class/fc_host`` port of a real HBA on ``executor``'s node (see :func:`pick_port`)."""
    return pick_port(fc_hosts(executor), hba, executor.node)


def parse_qlini_mode(text: str) -> str:
    """The mode in a ``qlini_mode`` file: the module parameter holds just the word; a host's
    attribute lists the supported options, then ``Current selection: <mode>`` (qla_attr.c)."""
    match = re.search(r"Current selection:\s*(\S+)", text)
    return match[1] if match else text.strip()


def qlini_mode(executor: Executor, host: str | None = None) -> str | None:
    """qla2xxx's initiator mode for ``host`` (its own ``scsi_host`` attribute overrides the module
    parameter) or for the module; None when qla2xxx is not loaded."""
    paths = ([f"/sys/class/scsi_host/{plain_name(executor.node, 'SCSI host', host)}/qlini_mode"] if host else []) + [
        QLINI_MODE
    ]
    for path in paths:
        result = executor.run(f"cat {shlex.quote(path)}", timeout=30, check=False)
        if result.ok and result.stdout.strip():
            return parse_qlini_mode(result.stdout)
    return None


def target_mode_problem(executor: Executor, host: str | None = None) -> str | None:
    """Why tcm_qla2xxx cannot take ``host``'s port (or any port) as a target here, or None."""
    mode = qlini_mode(executor, host)
    if mode is None:
        return "qla2xxx is not loaded"
    if mode == "enabled":
        return "qla2xxx runs with qlini_mode=enabled (initiator only)"
    return None
