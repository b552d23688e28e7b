"""Giving a link's NVMe namespace back to later tests after a fabric fault was repaired.

Shared by every link whose ``NvmeNamespace`` carries a :class:`FabricFault`: a
fault test must never leave the link's session pointing at a dead controller
or a block device name that no longer exists.
"""

from __future__ import annotations

from dataclasses import replace

from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost
from fabqual.executors.base import log_step
from fabqual.links.base import LinkSession

# After a repaired fault the kernel gets this long to make its controllers live
# again by itself before they are dropped and connected afresh.
RELIVE_GRACE = 10.0


def restore_namespace(session: LinkSession, nvme: NvmeHost, specs: tuple[ConnectSpec, ...]) -> None:
    """Make the session's namespace usable again after a repaired fault, for every later test.

    The controllers get :data:`RELIVE_GRACE` to come back by themselves, else
    they are reconnected on every path of ``specs``; the namespace's block
    device is looked up again (a fresh controller may bring a new name) and the
    session's handle replaced.
    """
    old = session.nvme_namespace
    if old is None:  # the link's bring-up had not finished: nothing to restore
        return
    controllers = nvme.ensure_live(specs, grace=RELIVE_GRACE)
    nqn = specs[0].subsystem_nqn
    device = nvme.namespace_device(nqn)
    if device.path != old.device:
        log_step(nvme.executor.node, f"namespace of {nqn} is now {device.path} (was {old.device})")
    session.nvme_namespace = replace(
        old, device=device.path, controllers=controllers, size_bytes=device.size_bytes or old.size_bytes
    )
