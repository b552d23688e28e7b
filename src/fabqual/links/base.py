"""The contract every link driver keeps, and the registry that finds them.

A driver brings one link of the topology up and returns a :class:`LinkSession`
holding what tests may use (the capabilities the link offers); ``down()`` removes
exactly what ``up()`` created, and is safe to call after a partial ``up()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fabqual.drivers.rundir import RunDirs
from fabqual.errors import FabqualError
from fabqual.executors.base import Executor
from fabqual.topology.model import Link, Topology

# What tests can ask for, and which link types offer it. Tests name a
# capability; the topology decides which links (and so which backends) serve it.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "fc_nvme": ("nvme_namespace",),
    "nvmet_rdma": ("nvme_namespace", "rdma_pair", "nvme_multipath"),
    "pvrdma": ("rdma_pair",),
    "ipofc": ("ip_tunnel",),
}


def offers(link: Link, capability: str) -> bool:
    """Whether ``link`` offers ``capability``: by its type, and multipath only with extra paths declared."""
    if capability not in CAPABILITIES[link.type]:
        return False
    if capability == "nvme_multipath":
        return bool(getattr(link.params, "extra_paths", ()))
    return True


# Short transport names used in test ids: tr=fc-rw=randread-bs=4k-qd=32.
SHORT_NAMES: dict[str, str] = {"fc_nvme": "fc", "nvmet_rdma": "rdma", "pvrdma": "pvrdma", "ipofc": "ipofc"}


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
    nvme_namespace: Any = None
    rdma_pair: Any = None
    ip_tunnel: Any = None
    facts: dict[str, str] = field(default_factory=dict)

    def capability(self, name: str) -> Any:
        return getattr(self, name)


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


DriverFactory = Callable[[LinkContext], LinkDriver]
_REGISTRY: dict[str, DriverFactory] = {}


def register(link_type: str) -> Callable[[DriverFactory], DriverFactory]:
    """Class decorator: the driver for ``link_type``."""

    def decorate(factory: DriverFactory) -> DriverFactory:
        _REGISTRY[link_type] = factory
        return factory

    return decorate


def driver_for(context: LinkContext) -> LinkDriver:
    """The driver for the context's link, importing ``fabqual.links.<type>`` on first use."""
    link_type = context.link.type
    if link_type not in _REGISTRY:
        try:
            importlib.import_module(f"fabqual.links.{link_type}")
        except ModuleNotFoundError as error:
            if error.name != f"fabqual.links.{link_type}":
                raise
            raise FabqualError(
                f"no driver for link type {link_type!r} (expected module fabqual.links.{link_type})"
            ) from None
    return _REGISTRY[link_type](context)
