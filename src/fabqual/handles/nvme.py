"""What a test gets from an NVMe-oF link: the connected namespace, and the fabric faults it may inject."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fabqual.executors.base import Executor
from fabqual.handles.block import BlockDevice
from fabqual.line_rate import LineRate
from fabqual.topology.model import Link


@dataclass(frozen=True)
class FabricFault:
    """A way to take the link's fabric away and give it back (for fault tests).

    ``inject`` breaks the path between host and target (fcloop remote port
    deleted, RDMA netdev set down); ``repair`` restores it and waits until the
    host's controllers are live again. Teardown repairs too, if a test did not.
    """

    description: str
    inject: Callable[[], None] = field(repr=False)
    repair: Callable[[], None] = field(repr=False)
    # For a single path of a multipath namespace: its address as nvme-cli shows it ("traddr=…,trsvcid=…").
    path_address: str = ""


@dataclass(frozen=True)
class NvmeNamespace:
    """An NVMe namespace exported by a target and connected on a host.

    ``scratch`` is true only when the exported device is declared scratch in the
    topology: tests write to ``device`` only then.
    """

    link: Link
    host: Executor = field(repr=False)
    device: str  # e.g. /dev/nvme1n1 on the host
    transport: str  # fc, rdma or tcp (nvme-cli's trtype)
    subsystem_nqn: str
    scratch: bool
    controllers: tuple[str, ...] = ()  # nvme1, nvme2 (several with multipath)
    size_bytes: int = 0
    target_node: str = ""
    fault: FabricFault | None = None
    # One per path with native multipath (in connect order): each takes only that path away.
    path_faults: tuple[FabricFault, ...] = ()
    facts: dict[str, str] = field(default_factory=dict, compare=False)
    # The ports every path crosses, with their rates as read: what bandwidth fractions are of.
    line_rate: LineRate | None = None

    def block_device(self) -> BlockDevice:
        """The namespace as the block device its host sees (what fio runs on)."""
        return BlockDevice(
            link=self.link,
            host=self.host,
            device=self.device,
            scratch=self.scratch,
            size_bytes=self.size_bytes,
            facts=self.facts,
            line_rate=self.line_rate,
        )
