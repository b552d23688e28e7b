"""What a node must have for the links it serves: records the doctor checks, and their builders.

A link type's spec (:mod:`fabqual.linkspec`) lists its endpoints' requirements
with the builders here; a target backend lists its own. The doctor probes each
one on the node (``modprobe -n``, ``command -v``, sysfs) and never reads a table
of versions. Data only: nothing here touches a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from fabqual.topology.model import Node, ScratchDevice


@dataclass(frozen=True)
class Requirement:
    """One thing a node must have: a kernel module, a tool, a mount, a file, a port state."""

    kind: str
    name: str
    detail: str = ""
    scratch: ScratchDevice | None = None  # kind "scratch": the device to prove unused


def module(name: str) -> Requirement:
    return Requirement("module", name)


def tool(name: str) -> Requirement:
    return Requirement("tool", name)


# What proves a scratch device unused before it is exported (drivers/blockdev.py).
SCRATCH_TOOLS = ("blkid", "wipefs", "findmnt", "lsblk")


def hba_needs(node: Node, device: str | None) -> list[Requirement]:
    """A real FC HBA's driver, firmware and an Online port; nothing for an emulated one."""
    if not device:
        return []
    hba = node.hba(device)
    if hba.emulation != "none":
        return []
    reqs = [module(hba.driver)]
    if hba.firmware:
        reqs.append(Requirement("firmware", hba.firmware))
    reqs.append(Requirement("fc_link", hba.name, hba.wwpn))
    return reqs


def rnic_needs(node: Node, device: str | None) -> list[Requirement]:
    """An RNIC's driver (rxe when emulated), the RDMA tools, and an ACTIVE port on real hardware."""
    if not device:
        return []
    rnic = node.rnic(device)
    reqs = [module("rdma_rxe" if rnic.emulation == "rxe" else rnic.driver), tool("rdma"), tool("ibv_devinfo")]
    reqs.append(tool("ib_write_bw"))
    if rnic.emulation == "none":
        reqs.append(Requirement("rdma_port", rnic.rdma_device, rnic.netdev))
    return reqs


def scratch_needs(node: Node, names: tuple[str, ...]) -> list[Requirement]:
    """The tools that prove scratch devices unused, and each declared device to prove."""
    reqs = [tool(name) for name in SCRATCH_TOOLS]
    for scratch in (node.scratch(name) for name in names):
        if scratch.create == "none":  # one fabqual creates is proven at bring-up, once it exists
            reqs.append(Requirement("scratch", scratch.name, scratch=scratch))
    return reqs


def nvme_export_needs(node: Node, namespaces: tuple[str, ...], trtype: str) -> list[Requirement]:
    """An NVMe-oF target exporting ``namespaces`` over ``trtype``: scratch proofs and its backend's needs."""
    from fabqual.targetspec import target_backend  # the registry imports this module: asked at call time

    reqs = scratch_needs(node, namespaces)
    target = node.nvme_target
    backend = target_backend(target.backend if target else "kernel")
    return reqs + list(backend.requirements(node, trtype))


def nvme_host_needs(trtype: str) -> list[Requirement]:
    """An NVMe-oF host over ``trtype``: the host transport module, nvme-cli and fio."""
    return [module(f"nvme-{trtype}"), tool("nvme"), tool("fio")]
