"""The record a test gets from an IP tunnel link: two ends with an address each.

Tests run ``ping``/``iperf3`` from one end's executor to the other end's address;
on a one-node carrier (``tcm_loop``) each end's executor runs its commands inside
that end's network namespace, so the same test body works unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fabqual.executors.base import Executor
from fabqual.topology.model import Link


@dataclass(frozen=True)
class TunnelEnd:
    """One end of the tunnel: where commands run, its tunnel address and TUN device."""

    executor: Executor = field(repr=False)
    address: str  # 10.77.0.1
    prefix_length: int
    ifname: str  # fqipfc0
    role: str  # target or initiator
    netns: str | None = None

    @property
    def node(self) -> str:
        return self.executor.node


@dataclass(frozen=True)
class IpTunnel:
    """Two tunnel ends joined over SCSI commands; ``set_mtu`` changes both TUN MTUs."""

    link: Link
    target: TunnelEnd
    initiator: TunnelEnd
    carrier: str  # fcoe, fc or tcm_loop
    mtu: int
    set_mtu_both: Callable[[int], None] = field(repr=False, compare=False)
    facts: dict[str, str] = field(default_factory=dict, compare=False)

    def set_mtu(self, mtu: int) -> IpTunnel:
        """Set both TUN devices to ``mtu``; returns the tunnel record with the new MTU."""
        self.set_mtu_both(mtu)
        return IpTunnel(self.link, self.target, self.initiator, self.carrier, mtu, self.set_mtu_both, self.facts)
