"""SPDK's nvmf target as an NVMe-oF target backend, driven over its JSON-RPC socket."""

from __future__ import annotations

from functools import partial

from fabqual.drivers.journal import Journal
from fabqual.drivers.spdk import Listener, NodeRpcClient, SpdkTarget
from fabqual.drivers.target import Export, PortSwitch
from fabqual.errors import DriverError
from fabqual.executors.base import Executor
from fabqual.requirement import Requirement
from fabqual.targetspec import TargetBackend, register_backend
from fabqual.topology.model import Node

SPDK_ADRFAM = {"rdma": "IPv4", "tcp": "IPv4", "fc": "FC"}


def export_spdk(
    node: Node, executor: Executor, journal: Journal, what: Export, scratch: tuple[str, ...]
) -> tuple[PortSwitch, ...]:
    if node.nvme_target is None:
        raise DriverError(f"{node.name}: backend spdk needs the node's nvme_target (rpc_socket)")
    spdk = SpdkTarget(NodeRpcClient(executor, node.nvme_target.rpc_socket), journal, node.name, scratch_paths=scratch)
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
    return tuple(switches)


def spdk_needs(node: Node, trtype: str) -> list[Requirement]:
    target = node.nvme_target
    if target is None:
        return []
    return [Requirement("hugepages", str(target.hugepages_gb)), Requirement("spdk_socket", target.rpc_socket)]


SPDK = register_backend(TargetBackend("spdk", export_spdk, spdk_needs))
