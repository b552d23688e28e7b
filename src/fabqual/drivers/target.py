"""The NVMe-oF target backend a node's topology entry names, behind one small interface.

A link driver says *what* to export (subsystem, scratch devices, one listen
address per path); :func:`export` looks up the backend ``node.nvme_target.backend``
names in the registry (:mod:`fabqual.targetspec`: kernel nvmet and SPDK built
in, others through the ``fabqual.target_backends`` entry point) and lets it
journal every step, so teardown is the same for all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.scratch import SafeScratch
from fabqual.errors import DriverError
from fabqual.executors.base import Executor
from fabqual.targetspec import target_backend
from fabqual.topology.grammar import check_nqn
from fabqual.topology.model import Node


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
    backend: str  # the registered backend's name (nvme_target.backend)
    ports: tuple[PortSwitch, ...]  # in the order of Export.addresses


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
    switches: tuple[PortSwitch, ...] = backend.export(node, executor, journal, what, scratch)
    return Exported(backend.name, switches)
