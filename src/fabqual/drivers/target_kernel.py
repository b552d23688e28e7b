"""Kernel nvmet as an NVMe-oF target backend: configfs subsystems, namespaces and ports."""

from __future__ import annotations

from functools import partial

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvmet import NvmetTarget
from fabqual.drivers.target import Export, PortSwitch
from fabqual.executors.base import Executor
from fabqual.requirement import Requirement, module
from fabqual.targetspec import TargetBackend, register_backend
from fabqual.topology.model import Node


def export_kernel(
    node: Node, executor: Executor, journal: Journal, what: Export, scratch: tuple[str, ...]
) -> tuple[PortSwitch, ...]:
    kernel = NvmetTarget(executor, journal, scratch_paths=scratch)
    for trtype in dict.fromkeys(a.trtype for a in what.addresses):
        kernel.prepare(trtype)
    kernel.remove_stale(what.nqn)
    kernel.create_subsystem(what.nqn, allow_any_host=what.allow_any_host, allowed_hosts=what.allowed_hosts)
    for index, path in enumerate(scratch, start=1):
        kernel.add_namespace(what.nqn, index, path)
    switches = []
    for address in what.addresses:
        port_id = kernel.create_port(address)
        kernel.link_port(port_id, what.nqn)
        switches.append(
            PortSwitch(
                address, partial(kernel.unlink_port, port_id, what.nqn), partial(kernel.relink_port, port_id, what.nqn)
            )
        )
    return tuple(switches)


def kernel_needs(node: Node, trtype: str) -> list[Requirement]:
    return [module("nvmet"), module(f"nvmet-{trtype}"), Requirement("configfs", "/sys/kernel/config")]


KERNEL = register_backend(TargetBackend("kernel", export_kernel, kernel_needs))
