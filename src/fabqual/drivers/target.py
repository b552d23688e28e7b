"""The NVMe-oF target backend a node's topology entry names, behind one small interface.

A link driver says *what* to export (subsystem, scratch devices, one listen
address); this picks kernel nvmet or SPDK from ``node.nvme_target.backend`` and
journals every step, so teardown is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvmet import NvmetTarget, PortAddress
from fabqual.drivers.spdk import Listener, NodeRpcClient, SpdkTarget
from fabqual.executors.base import Executor
from fabqual.topology.model import Node

SPDK_ADRFAM = {"rdma": "IPv4", "tcp": "IPv4", "fc": "FC"}


@dataclass(frozen=True)
class Export:
    """What to export: a subsystem with these scratch devices, listening on one address."""

    nqn: str
    device_paths: tuple[str, ...]
    address: PortAddress
    allow_any_host: bool
    allowed_hosts: tuple[str, ...] = ()


def export(node: Node, executor: Executor, journal: Journal, what: Export) -> str:
    """Export ``what`` on ``node``; returns the backend name (kernel or spdk)."""
    scratch = tuple(device.path for device in node.scratch_devices)
    backend = node.nvme_target.backend if node.nvme_target else "kernel"
    if backend == "spdk":
        assert node.nvme_target is not None
        spdk = SpdkTarget(
            NodeRpcClient(executor, node.nvme_target.rpc_socket), journal, node.name, scratch_paths=scratch
        )
        spdk.ensure_transport(what.address.trtype)
        spdk.create_subsystem(what.nqn, allow_any_host=what.allow_any_host)
        for hostnqn in what.allowed_hosts:
            spdk.add_host(what.nqn, hostnqn)
        for index, path in enumerate(what.device_paths, start=1):
            bdev = spdk.create_aio_bdev(f"fabqual_{path.rsplit('/', 1)[-1]}", path)
            spdk.add_namespace(what.nqn, bdev, nsid=index)
        spdk.add_listener(
            what.nqn,
            Listener(what.address.trtype, what.address.traddr, what.address.trsvcid, SPDK_ADRFAM[what.address.trtype]),
        )
        return backend
    kernel = NvmetTarget(executor, journal, scratch_paths=scratch)
    kernel.prepare(what.address.trtype)
    kernel.remove_stale(what.nqn)
    kernel.create_subsystem(what.nqn, allow_any_host=what.allow_any_host, allowed_hosts=what.allowed_hosts)
    for index, path in enumerate(what.device_paths, start=1):
        kernel.add_namespace(what.nqn, index, path)
    kernel.link_port(kernel.create_port(what.address), what.nqn)
    return "kernel"
