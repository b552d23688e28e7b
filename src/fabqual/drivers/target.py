"""The NVMe-oF target backend a node's topology entry names, behind one small interface.

A link driver says *what* to export (subsystem, scratch devices, one listen
address per path); this picks kernel nvmet or SPDK from ``node.nvme_target.backend`` and
journals every step, so teardown is the same for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvmet import NvmetTarget, PortAddress
from fabqual.drivers.scratch import SafeScratch
from fabqual.drivers.spdk import Listener, NodeRpcClient, SpdkTarget
from fabqual.errors import DriverError
from fabqual.executors.base import Executor
from fabqual.topology.grammar import check_nqn
from fabqual.topology.model import Node

SPDK_ADRFAM = {"rdma": "IPv4", "tcp": "IPv4", "fc": "FC"}


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
    backend = node.nvme_target.backend if node.nvme_target else "kernel"
    if backend == "spdk":
        assert node.nvme_target is not None
        spdk = SpdkTarget(
            NodeRpcClient(executor, node.nvme_target.rpc_socket), journal, node.name, scratch_paths=scratch
        )
        for trtype in dict.fromkeys(a.trtype for a in what.addresses):
            spdk.ensure_transport(trtype)
        spdk.create_subsystem(what.nqn, allow_any_host=what.allow_any_host)
        for hostnqn in what.allowed_hosts:
            spdk.add_host(what.nqn, hostnqn)
        for index, path in enumerate(scratch, start=1):
            bdev = spdk.create_aio_bdev(f"fabqual_{path.rsplit('/', 1)[-1]}", path)
            spdk.add_namespace(what.nqn, bdev, nsid=index)
        switches = []
        for address in what.addresses:
            listener = Listener(address.trtype, address.traddr, address.trsvcid, SPDK_ADRFAM[address.trtype])
            spdk.add_listener(what.nqn, listener)
            switches.append(
                PortSwitch(
                    address,
                    partial(spdk.remove_listener, what.nqn, listener),
                    partial(spdk.readd_listener, what.nqn, listener),
                )
            )
        return Exported(backend, tuple(switches))
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
    return Exported("kernel", tuple(switches))
