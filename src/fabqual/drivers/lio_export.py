"""A LUN of one node's LIO exported to another node over Fibre Channel, found there as ``/dev/sgN``.

Three ways across, each in the order the kernel needs (the ORDER rule, docs/emulated-lab.md):

- :func:`export_over_fcoe`: software FCoE (VN2VN) on both nodes; the target's
  controller is enabled first, the initiator's created disabled (only its WWPN is
  needed), LIO's ``tcm_fc`` exports the backstore with an ACL for that WWPN, and
  only then is the initiator's controller enabled (``tcm_fc`` is never loaded on
  the initiator; teardown deletes the LUN's SCSI devices there first);
- :func:`export_over_fc`: real QLogic ports; the target's qla2xxx must be in target
  mode, ``tcm_qla2xxx`` exports the LUN with its ACL before the TPG is enabled, then
  the initiator issues a LIP, waits for the target's rport and scans its SCSI host
  (teardown deletes the LUN's SCSI device there again);
- :func:`export_over_loop`: ``tcm_loop``, target and initiator on one node.

The backstore is made by a :data:`Backing` (a ramdisk for self-tests, a TCMU device
served by a userspace handler for IPoFC, a scratch block device for fcp). Everything
is journaled.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from fabqual.drivers.fc_host import TARGET_MODE_FIX, FcHostPort, target_mode_problem
from fabqual.drivers.fcoe import FcoeController, SoftFcoe, remote_ports, wait_fcp_target
from fabqual.drivers.journal import Journal, write
from fabqual.drivers.lio import Backstore, Lio, loop_wwn
from fabqual.drivers.scsi_generic import SgDevice, rescan, wait_sg_device
from fabqual.errors import DriverError, LabError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name
from fabqual.tools.sg_inq import parse_sg_inq

# Makes the LUN's backstore on the target node (a ramdisk for self-tests, TCMU for the link).
Backing = Callable[[Lio], Backstore]

LUN = 0
SG_TIMEOUT = 30.0


@dataclass(frozen=True)
class ExportedLun:
    """A LUN of the target node as the initiator node sees it."""

    carrier: str
    sg: SgDevice
    backstore: Backstore
    target_port: FcoeController | FcHostPort | None = None
    initiator_port: FcoeController | FcHostPort | None = None


def export_over_fcoe(
    target: Executor,
    initiator: Executor,
    journal: Journal,
    backing: Backing,
    *,
    target_netdev: str,
    initiator_netdev: str,
    vendor: str,
    model: str,
) -> ExportedLun:
    """A backstore of ``target`` exported through tcm_fc over software FCoE to ``initiator``."""
    lio = Lio(target, journal)
    lio.prepare()
    target_port = SoftFcoe(target, journal).create(target_netdev)
    target_port = SoftFcoe(target, journal).enable(target_port)
    initiator_fcoe = SoftFcoe(initiator, journal)
    initiator_port = initiator_fcoe.create(initiator_netdev)  # disabled: only its WWPN is needed yet
    store = backing(lio)
    tpg = lio.fc_tpg(target_port.wwpn)
    lio.export(tpg, LUN, store)
    lio.allow(tpg, initiator_port.wwpn, LUN)
    forget_at_teardown(initiator, journal, initiator_port.host, target_port.wwpn)
    initiator_port = initiator_fcoe.enable(initiator_port)
    initiator_fcoe.wait_target(initiator_port, target_port.wwpn)
    sg = wait_sg_device(initiator, vendor=vendor, model=model, host=initiator_port.host, timeout=SG_TIMEOUT)
    return ExportedLun("fcoe", sg, store, target_port, initiator_port)


def export_over_fc(
    target: Executor,
    initiator: Executor,
    journal: Journal,
    backing: Backing,
    *,
    target_port: FcHostPort,
    initiator_port: FcHostPort,
    vendor: str,
    model: str,
) -> ExportedLun:
    """A backstore of ``target`` exported through tcm_qla2xxx on its QLogic port to ``initiator``'s FC port."""
    why = target_mode_problem(target, target_port.host)
    if why:
        raise LabError(
            f"{target.node}: {why}, so FC port {target_port.wwpn} cannot be an LIO target; {TARGET_MODE_FIX}"
        )
    lio = Lio(target, journal)
    lio.prepare()
    store = backing(lio)
    tpg = lio.qla2xxx_tpg(target_port.wwpn, enable=False)
    lio.export(tpg, LUN, store)
    lio.allow(tpg, initiator_port.wwpn, LUN)
    lio.enable_tpg(tpg)  # logins are accepted only now, with the ACL in place
    host = initiator_port.host
    forget_at_teardown(initiator, journal, host, target_port.wwpn)
    write(initiator, f"/sys/class/fc_host/{host}/issue_lip", "1")  # log in again: the new target is seen
    wait_fcp_target(
        initiator,
        host,
        target_port.wwpn,
        timeout=SG_TIMEOUT,
        hint="are both ports zoned together, and is the target's tcm_qla2xxx TPG enabled?",
    )
    rescan(initiator, host)
    sg = wait_sg_device(initiator, vendor=vendor, model=model, host=host, timeout=SG_TIMEOUT)
    return ExportedLun("fc", sg, store, target_port, initiator_port)


def forget_at_teardown(initiator: Executor, journal: Journal, host: str, target_wwpn: str) -> None:
    """Journal the deletion of the LUN's SCSI devices on the initiator: undone before the LUN goes away."""
    journal.record(
        initiator.node,
        f"SCSI devices of LUN {LUN} of {target_wwpn} on {host}",
        lambda: forget_lun(initiator, host, target_wwpn, LUN),
        replay=forget_lun_command(host, target_wwpn, LUN),
        executor=initiator,
    )


def forget_lun(executor: Executor, host: str, target_wwpn: str, lun: int) -> None:
    """Delete the SCSI device(s) of ``lun`` behind the remote port ``target_wwpn`` of ``host``."""
    number = plain_name(executor.node, "SCSI host", host).removeprefix("host")
    for port in remote_ports(executor, host):
        if port.wwpn == target_wwpn.lower() and port.scsi_target_id >= 0:
            log_step(executor.node, f"delete SCSI device {number}:*:{port.scsi_target_id}:{lun} ({target_wwpn})")
            executor.run(
                f"for d in /sys/class/scsi_device/{number}:*:{port.scsi_target_id}:{lun}/device/delete;"
                ' do [ -e "$d" ] && echo 1 > "$d"; done; true',
                timeout=60,
            )


def forget_lun_command(host: str, target_wwpn: str, lun: int) -> str:
    """:func:`forget_lun` as one shell command, for a later process replaying the journal."""
    number = host.removeprefix("host")
    return (
        f"for r in /sys/class/fc_remote_ports/rport-{number}:*; do"
        f' [ "$(cat $r/port_name 2>/dev/null)" = {shlex.quote(target_wwpn.lower())} ] || continue;'
        f' t=$(cat $r/scsi_target_id); [ "$t" -ge 0 ] || continue;'
        f' for d in /sys/class/scsi_device/{number}:*:$t:{lun}/device/delete; do [ -e "$d" ] && echo 1 > "$d"; done;'
        " done; true"
    )


def export_over_loop(
    node: Executor, journal: Journal, backing: Backing, *, vendor: str, model: str, seed: str = "fq-ipofc"
) -> ExportedLun:
    """A backstore of ``node`` exported to the same node through tcm_loop (WWNs derived from ``seed``)."""
    lio = Lio(node, journal)
    lio.prepare()
    store = backing(lio)
    tpg = lio.loop_tpg(loop_wwn(f"{seed}-t"), loop_wwn(f"{seed}-i"))
    lio.export(tpg, LUN, store)
    sg = wait_sg_device(node, vendor=vendor, model=model, timeout=SG_TIMEOUT)
    return ExportedLun("tcm_loop", sg, store)


def ramdisk(name: str, size_bytes: int) -> Backing:
    return lambda lio: lio.ramdisk(name, size_bytes)


def sg_inquiry_identity(executor: Executor, device: str) -> tuple[int, str, str]:
    """Peripheral type, vendor and product as sg3_utils' ``sg_inq`` reads them (an independent client)."""
    out = executor.run(f"sg_inq {shlex.quote(device)}", timeout=60).stdout
    try:
        inquiry = parse_sg_inq(out)
    except ParseError as error:
        raise DriverError(f"{executor.node}: sg_inq {device}: {str(error).splitlines()[0]}") from None
    return inquiry.peripheral_type, inquiry.vendor, inquiry.product
