"""NVMe-oF target backends, registered by name: what the loader, the doctor and the links ask of one.

A backend is one module that registers a :class:`TargetBackend` when imported:
kernel nvmet (:mod:`fabqual.drivers.target_kernel`) and SPDK
(:mod:`fabqual.drivers.target_spdk`) are built in; another package adds one
through the ``fabqual.target_backends`` entry point (its value is the module to
import). The topology's ``nvme_target.backend`` is checked against these names
when the file is loaded, the doctor asks a backend's requirements, and
:func:`fabqual.drivers.target.export` calls its ``export``.

Layers: like :mod:`fabqual.linkspec`, this module sits beside ``topology`` and
imports only records below it; the backend modules (drivers) are imported by
name on the first question, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fabqual.entry_points import Discovery
from fabqual.errors import FabqualError
from fabqual.requirement import Requirement
from fabqual.topology.model import Node

ENTRY_POINT_GROUP = "fabqual.target_backends"
BUILTIN_MODULES = ("fabqual.drivers.target_kernel", "fabqual.drivers.target_spdk")


@dataclass(frozen=True)
class TargetBackend:
    """One NVMe-oF target implementation: how it exports, and what its node needs (for the doctor)."""

    name: str  # the topology's nvme_target.backend
    # (node, executor, journal, drivers.target.Export, its scratch devices' kernel names) → a
    # drivers.target.PortSwitch per address, in their order, every step journaled (drivers sit above this layer)
    export: Callable[..., tuple[Any, ...]]
    requirements: Callable[[Node, str], Iterable[Requirement]]  # (node, trtype) → what it must have


_BACKENDS: dict[str, TargetBackend] = {}
_discover = Discovery(ENTRY_POINT_GROUP, "target backend", BUILTIN_MODULES)


def register_backend(backend: TargetBackend) -> TargetBackend:
    """Register ``backend`` under its name (registered again, e.g. by a re-imported module, it replaces it)."""
    _BACKENDS[backend.name] = backend
    return backend


def target_backends() -> tuple[str, ...]:
    """Every registered backend's name, sorted."""
    _discover()
    return tuple(sorted(_BACKENDS))


def target_backend(name: str) -> TargetBackend:
    """The registered backend ``name``; FabqualError naming the known ones if there is none."""
    _discover()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise FabqualError(f"unknown NVMe target backend {name!r}; known: {', '.join(target_backends())}") from None
