"""Giving a link's NVMe namespace back to later tests after a fabric fault was repaired.

Shared by every link whose ``NvmeNamespace`` carries a :class:`FabricFault`: a
fault test must never leave the link's session pointing at a dead controller
or a block device name that no longer exists.
"""

from __future__ import annotations

from dataclasses import replace

from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost
from fabqual.drivers.target import PortSwitch
from fabqual.errors import DriverError
from fabqual.executors.base import log_step
from fabqual.handles import FabricFault
from fabqual.links.base import LinkSession

# After a repaired fault the kernel gets this long to make its controllers live
# again by itself before they are dropped and connected afresh.
RELIVE_GRACE = 10.0
# A path given back reconnects within the host's reconnect_delay (2 s) once the port exports again.
PATH_BACK_TIMEOUT = 60.0


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


def path_fault(switch: PortSwitch, nvme: NvmeHost, nqn: str, paths: int) -> FabricFault:
    """Take one path away at the target (its port stops exporting the subsystem), and give it back.

    The host's controller on that path loses its connection and keeps trying to
    reconnect; native multipath must carry I/O on the other paths meanwhile.
    """
    address = switch.address

    def repair() -> None:
        switch.resume()
        live = nvme.wait_live(nqn, timeout=PATH_BACK_TIMEOUT)
        if len(live) < paths:
            raise DriverError(f"{nvme.executor.node}: only {len(live)} of {paths} paths of {nqn} came back")

    return FabricFault(
        f"stop exporting {nqn} on {address.traddr}:{address.trsvcid}",
        switch.stop,
        repair,
        path_address=f"traddr={address.traddr},trsvcid={address.trsvcid}",
    )
