"""The NVMe-oF target backend a node's topology entry names, behind one small interface.

A link driver says *what* to export (subsystem, scratch devices, one listen
address per path); :func:`export` looks up the backend ``node.nvme_target.backend``
names in the registry and lets it journal every step, so teardown is the same
for all. A backend is one module that registers a :class:`TargetBackend`:
kernel nvmet (``target_kernel``) and SPDK (``target_spdk``) are built in;
another package adds one through the ``fabqual.target_backends`` entry point
(its value is the module to import).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.scratch import SafeScratch
from fabqual.entry_points import load_group
from fabqual.errors import DriverError, FabqualError
from fabqual.executors.base import Executor
from fabqual.requirement import Requirement
from fabqual.topology.grammar import check_nqn
from fabqual.topology.model import Node

ENTRY_POINT_GROUP = "fabqual.target_backends"
BUILTIN_MODULES = ("fabqual.drivers.target_kernel", "fabqual.drivers.target_spdk")


@dataclass(frozen=True)
class Export:
    """What to export: a subsystem with these scratch devices, listening on each address (one per path)."""

    nqn: str
    devices: tuple[SafeScratch, ...]  # proven safe on the node by drivers.scratch
    addresses: tuple[PortAddress, ...]
    allow_any_host: bool
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PortSwitch:
    """Stop and resume exporting the subsystem on one address: one path taken away and given back."""

    address: PortAddress
    stop: Callable[[], None] = field(repr=False)
    resume: Callable[[], None] = field(repr=False)


@dataclass(frozen=True)
class Exported:
    backend: str  # kernel or spdk
    ports: tuple[PortSwitch, ...]  # in the order of Export.addresses


@dataclass(frozen=True)
class TargetBackend:
    """One NVMe-oF target implementation: how it exports, and what its node needs (for the doctor)."""

    name: str  # the topology's nvme_target.backend
    export: Callable[[Node, Executor, Journal, Export, tuple[str, ...]], tuple[PortSwitch, ...]]
    requirements: Callable[[Node, str], Iterable[Requirement]]  # (node, trtype) → what it must have


_BACKENDS: dict[str, TargetBackend] = {}
_discovered = False


def register_backend(backend: TargetBackend) -> TargetBackend:
    _BACKENDS[backend.name] = backend
    return backend


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True  # set first: a module being imported may ask the registry again
    try:
        load_group(ENTRY_POINT_GROUP, "target backend", BUILTIN_MODULES)
    except FabqualError:
        _discovered = False  # asked again, discovery is tried again
        raise


def target_backend(name: str) -> TargetBackend:
    """The registered backend ``name``; FabqualError naming the known ones if there is none."""
    _discover()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise FabqualError(f"unknown NVMe target backend {name!r}; known: {', '.join(sorted(_BACKENDS))}") from None


def export(node: Node, executor: Executor, journal: Journal, what: Export) -> Exported:
    """Export ``what`` on ``node``, journaled; returns the backend and a switch per address.

    Only scratch devices of ``node`` that its node proved safe are exported, by
    the kernel device they resolved to.
    """
    problem = check_nqn(what.nqn)
    if problem:  # the loader refuses such an NQN; it would name a configfs directory
        raise DriverError(f"{node.name}: refusing to export subsystem {what.nqn!r}: {problem}")
    declared = {device.name for device in node.scratch_devices}
    for device in what.devices:
        if device.node != node.name or device.name not in declared:
            raise DriverError(f"{node.name}: refusing to export {device.device}: not a scratch device of this node")
    scratch = tuple(device.device for device in what.devices)
    backend = target_backend(node.nvme_target.backend if node.nvme_target else "kernel")
    return Exported(backend.name, backend.export(node, executor, journal, what, scratch))
