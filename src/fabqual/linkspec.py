"""Link types, registered by name: everything the rest of fabqual needs to know about one.

Each link module (``fabqual/links/<type>.py``) declares one :class:`LinkSpec` —
its params record, endpoint roles and the node role each needs, the kind of
device an endpoint names, the capabilities it offers, its short id in test ids,
its doctor requirements and the metrics its tests record — and decorates its
driver with :func:`link_type`. The topology loader, the plugin, the doctor, the
thresholds loader and the report read :func:`link_spec` / :func:`link_types`
instead of tables of their own.

Layers: this module sits below ``links`` and beside ``topology``; it imports
only topology records. The params records stay in :mod:`fabqual.topology.model`
so the loader can build and check them without importing any driver; the spec
just names them. Which modules to import is the only thing kept here: the
built-in link modules (one line each) and every entry point of the group
``fabqual.link_types`` (the value is a module that registers its spec when
imported), so another package adds a link type without editing fabqual. They
are imported on the first question asked, not when this module is imported; a
module that fails to import is one :class:`~fabqual.errors.FabqualError` line
naming the entry point and the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fabqual.entry_points import Discovery
from fabqual.errors import FabqualError
from fabqual.requirement import Requirement
from fabqual.topology.model import Link, Node, Topology

ENTRY_POINT_GROUP = "fabqual.link_types"

# The link types fabqual ships: the modules that register them.
BUILTIN_MODULES = (
    "fabqual.links.fc_nvme",
    "fabqual.links.nvmet_rdma",
    "fabqual.links.pvrdma",
    "fabqual.links.ipofc",
    "fabqual.links.nvme_tcp",
    "fabqual.links.fcp",
)

# What an endpoint's ``device:`` may name, per kind: the node's records of that kind.
DEVICE_KINDS: dict[str, Callable[[Node], Iterable[Any]]] = {
    "HBA": lambda node: node.hbas,
    "RNIC": lambda node: node.rnics,
    "NIC": lambda node: node.nics,
}

Requirements = Callable[[Link, str, Node, "str | None"], Iterable[Requirement]]
LinkCheck = Callable[[Topology, Link], None]


def _no_requirements(link: Link, role: str, node: Node, device: str | None) -> Iterable[Requirement]:
    return ()


def _no_check(topology: Topology, link: Link) -> None:
    return None


def _always(link: Link) -> bool:
    return True


@dataclass(frozen=True)
class LinkSpec:
    """One link type, declared once by its module."""

    name: str  # the topology's ``type:``, the pytest marker (``-m name``)
    short: str  # in test ids: tr=<short>-bs=4k
    params: type  # the params record (a dataclass in fabqual.topology.model or the plugin's own)
    roles: Mapping[str, str]  # endpoint role (a key of the link) → node role the node must list
    capabilities: tuple[str, ...]  # what tests may ask of it (fixtures: nvme_namespace, rdma_pair, ...)
    metrics: tuple[str, ...]  # metric names its tests record (thresholds entries are checked against them)
    device_kind: str | None = None  # a key of DEVICE_KINDS: what ``device:`` of an endpoint names (required)
    requirements: Requirements = _no_requirements  # (link, role, node, device) → what the node needs
    check: LinkCheck = _no_check  # cross-references beyond the records (raise TopologyError)
    # A capability offered only under a condition (e.g. multipath only with extra paths declared).
    offered_when: Mapping[str, Callable[[Link], bool]] = field(default_factory=dict)
    node_roles: tuple[str, ...] = ()  # further node roles it defines that no endpoint requires
    description: str = ""

    def offers(self, link: Link, capability: str) -> bool:
        return capability in self.capabilities and self.offered_when.get(capability, _always)(link)


_SPECS: dict[str, LinkSpec] = {}
_DRIVERS: dict[str, Callable[..., Any]] = {}
_discover = Discovery(ENTRY_POINT_GROUP, "link type", BUILTIN_MODULES)

F = TypeVar("F", bound=Callable[..., Any])


def link_type(spec: LinkSpec) -> Callable[[F], F]:
    """Class decorator of a link driver: registers ``spec`` and the driver for ``spec.name``."""

    def decorate(factory: F) -> F:
        register_spec(spec)
        _DRIVERS[spec.name] = factory
        return factory

    return decorate


def register_spec(spec: LinkSpec) -> None:
    """Register ``spec``; a second, different spec of the same name is refused."""
    known = _SPECS.get(spec.name)
    if known is not None and known != spec:
        raise FabqualError(f"link type {spec.name!r} is registered twice ({known.params.__module__}, {spec.params})")
    if spec.device_kind is not None and spec.device_kind not in DEVICE_KINDS:
        raise FabqualError(
            f"link type {spec.name!r}: device kind {spec.device_kind!r} is not one of {', '.join(DEVICE_KINDS)}"
        )
    _SPECS[spec.name] = spec


def link_types() -> tuple[str, ...]:
    """Every registered link type, built-in ones first."""
    _discover()
    return tuple(_SPECS)


def link_spec(name: str) -> LinkSpec:
    """The spec of link type ``name``; FabqualError naming the known ones if there is none."""
    _discover()
    try:
        return _SPECS[name]
    except KeyError:
        raise FabqualError(f"unknown link type {name!r}; known: {', '.join(sorted(_SPECS))}") from None


def link_driver(name: str) -> Callable[..., Any]:
    """The driver factory registered for link type ``name``."""
    link_spec(name)
    return _DRIVERS[name]


def node_roles() -> tuple[str, ...]:
    """Every node role some link type's endpoint needs."""
    specs = [link_spec(name) for name in link_types()]
    return tuple(dict.fromkeys(role for spec in specs for role in (*spec.roles.values(), *spec.node_roles)))
