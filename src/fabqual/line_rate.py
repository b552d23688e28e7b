"""The line rate of the ports a link's traffic crosses, as read on the nodes.

A link records one :class:`PortRate` per port it uses (an FC port's
``fc_host`` speed, an RDMA port's ``rate``, a netdev's ``speed``), grouped by
path: each path lists its ports from the target (server) end to the host
(client) end. A bandwidth threshold that is a fraction of the line rate takes
:meth:`LineRate.gbps` of it, the way its profile entry says (``line_rate:
slowest`` or ``sum``). A port whose rate could not be read keeps the reason,
and a threshold that needs it fails with one line naming the node and the port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fabqual.errors import ThresholdError

Combine = Literal["slowest", "sum"]
COMBINE: tuple[Combine, ...] = ("slowest", "sum")


@dataclass(frozen=True)
class PortRate:
    """One port's rate in Gb/s of data, or None with the reason it is unknown."""

    node: str
    port: str  # "fc_host host3 (0x21000024ff7c1a2b)", "rxe0 port 1", "netdev eth1"
    gbps: float | None
    read: str  # what was read where ("/sys/class/net/eth1/speed = 25000"), or why nothing could be

    def describe(self) -> str:
        value = f"{self.gbps:g} Gb/s" if self.gbps is not None else "unknown"
        return f"{self.node} {self.port}: {value} ({self.read})"


@dataclass(frozen=True)
class LineRate:
    """The ports of every path of a link; the first path is the link's own."""

    paths: tuple[tuple[PortRate, ...], ...]

    @classmethod
    def one_path(cls, *ports: PortRate) -> LineRate:
        return cls((tuple(ports),))

    def gbps(self, combine: Combine = "slowest") -> float:
        """``slowest``: the slowest port of any path. ``sum``: what all paths carry together, each
        port counted once, limited by the side (position along the paths) whose ports add up least."""
        unknown = [port for path in self.paths for port in path if port.gbps is None or port.gbps <= 0]
        if unknown:
            port = unknown[0]
            raise ThresholdError(f"the line rate of {port.node} {port.port} could not be read: {port.read}")
        if not self.paths or not all(self.paths):
            raise ThresholdError("the link recorded no ports to take a line rate from")
        if combine == "slowest":
            return min(port.gbps or 0.0 for path in self.paths for port in path)
        sides = max(len(path) for path in self.paths)
        totals = []
        for side in range(sides):
            distinct = {(p.node, p.port): p.gbps or 0.0 for path in self.paths for p in path[side : side + 1]}
            totals.append(sum(distinct.values()))
        return min(totals)

    def describe(self) -> str:
        """One line for the report's inventory: every port with what was read."""
        parts = []
        for index, path in enumerate(self.paths):
            ports = "; ".join(port.describe() for port in path)
            parts.append(ports if len(self.paths) == 1 else f"path {index + 1}: {ports}")
        return " | ".join(parts)
