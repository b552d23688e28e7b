"""Fibre Channel HBA ports from ``/sys/class/fc_host``: WWNN, WWPN, state, speed.

:func:`parse_fc_hosts` is pure (a dump of the attribute files in, records out)
so it is tested on dumps captured from real and FCoE ports; :func:`fc_hosts`
makes the dump on a node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fabqual.errors import ParseError
from fabqual.executors.base import Executor

ATTRIBUTES = ("node_name", "port_name", "port_state", "speed", "port_type", "fabric_name", "symbolic_name")

# One line per attribute: "/sys/class/fc_host/host3/port_name:0x21000024ff7c1a2b" (as grep -H prints it).
_LINE = re.compile(r"^/sys/class/fc_host/(?P<host>[^/]+)/(?P<attr>[a-z_]+):(?P<value>.*)$")
_WWN = re.compile(r"^0x[0-9a-f]{16}$")
_SPEED = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>Gbit|Mbit)$")

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
    values: dict[str, dict[str, str]] = {}
    for line in dump.splitlines():
        match = _LINE.match(line.strip())
        if match:
            values.setdefault(match["host"], {})[match["attr"]] = match["value"].strip()
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
