"""The contract every link driver keeps.

A driver brings one link of the topology up and returns a :class:`LinkSession`
holding what tests may use (the capabilities the link offers); ``down()`` removes
exactly what ``up()`` created, and is safe to call after a partial ``up()``.
A driver is registered with its link type's spec (:func:`fabqual.linkspec.link_type`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fabqual.drivers.rundir import RunDirs
from fabqual.executors.base import Executor
from fabqual.handles import BlockDevice, IpTunnel, NvmeNamespace, RdmaPair
from fabqual.linkspec import link_driver, link_spec
from fabqual.topology.model import Link, Topology


def offers(link: Link, capability: str) -> bool:
    """Whether ``link`` offers ``capability``, as its link type's spec says (some only under a condition)."""
    return link_spec(link.type).offers(link, capability)


@dataclass(frozen=True)
class LinkContext:
    """What a driver gets: the whole topology, its link, and a way to reach nodes."""

    topology: Topology
    link: Link
    executor: Callable[[str], Executor]
    options: dict[str, Any] = field(default_factory=dict)
    run_dirs: RunDirs | None = None  # the session's run directories (None: this process's own)


@dataclass
class LinkSession:
    """A link that is up. Each capability the link offers is a handle here, or None."""

    link: Link
    nvme_namespace: NvmeNamespace | None = None
    rdma_pair: RdmaPair | None = None
    ip_tunnel: IpTunnel | None = None
    block_device: BlockDevice | None = None
    facts: dict[str, str] = field(default_factory=dict)

    def capability(self, name: str) -> NvmeNamespace | RdmaPair | IpTunnel | BlockDevice | None:
        """The handle of capability ``name`` (a field of this record), or None.

        An NVMe namespace is a block device: a link that gives none of its own hands
        out its namespace's, read when asked (a repaired fault may have renamed it).
        """
        if name == "block_device" and self.block_device is None and self.nvme_namespace is not None:
            return self.nvme_namespace.block_device()
        handle: NvmeNamespace | RdmaPair | IpTunnel | BlockDevice | None = getattr(self, name)
        return handle


@dataclass(frozen=True)
class MissingLink:
    """The parameter a test gets when no link of the topology offers its capability."""

    capability: str
    topology: str

    @property
    def reason(self) -> str:
        return f"topology {self.topology!r} has no link offering {self.capability}"


class LinkDriver(Protocol):
    """Brings one link up and down."""

    def up(self) -> LinkSession: ...

    def down(self) -> None: ...


def driver_for(context: LinkContext) -> LinkDriver:
    """The driver registered for the context's link type."""
    driver: LinkDriver = link_driver(context.link.type)(context)
    return driver
