"""What a test gets from a link that gives a host a block device: the device fio runs on.

An NVMe namespace is one (its ``/dev/nvmeXnY``); an FCP LUN is another (its
``/dev/sdX``). Tests that only read and write blocks ask for ``block_device``,
so one fio body runs over every such link, NVMe or SCSI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fabqual.executors.base import Executor
from fabqual.line_rate import LineRate
from fabqual.topology.model import Link


@dataclass(frozen=True)
class BlockDevice:
    """A block device on ``host`` whose storage sits across the link.

    ``scratch`` is true only when what backs it is a declared scratch device of
    the target node: tests write to ``device`` only then.
    """

    link: Link
    host: Executor = field(repr=False)
    device: str  # e.g. /dev/sdc, /dev/nvme1n1 on the host
    scratch: bool
    size_bytes: int = 0
    facts: dict[str, str] = field(default_factory=dict, compare=False)
    # The ports the I/O crosses, with their rates as read: what bandwidth fractions are of.
    line_rate: LineRate | None = None
