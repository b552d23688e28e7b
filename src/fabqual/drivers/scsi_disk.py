"""SCSI disks (``/dev/sdX``) found by their WWN, and the queue limits a link sets on one.

A LUN LIO exports carries an NAA WWN in its Device Identification VPD page
(0x83) that LIO derives from the backstore's unit serial (:func:`lio_naa_wwid`);
the initiator's kernel shows the best designator of that page as
``/sys/class/scsi_disk/H:C:T:L/device/wwid``. So the fcp link fixes the serial,
and finds its disk among the node's SCSI disks by that WWN (:func:`wait_disk`),
whatever ``sdX`` name the kernel gave it. :func:`parse_scsi_disks` is pure and
tested on dumps captured in the emulated lab.

:func:`limit_queue` lowers ``max_sectors_kb`` / ``queue_depth`` of the disk,
journaled with the old values; the undo command first checks that the disk
still has the WWN, so a later run replaying it never touches another disk that
took the same name.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from fabqual.drivers.journal import Journal, read, write
from fabqual.drivers.sysfs_dump import group_by_device
from fabqual.errors import DriverError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name

DUMP_COMMAND = (
    "grep -H . /sys/class/scsi_disk/*/device/wwid /sys/class/scsi_disk/*/device/vendor"
    " /sys/class/scsi_disk/*/device/model 2>/dev/null;"
    " ls -d /sys/class/scsi_disk/*/device/block/* 2>/dev/null; true"
)
_DISK = r"^/sys/class/scsi_disk/(?P<hctl>\d+:\d+:\d+:\d+)/device/"
_ATTRIBUTE = re.compile(_DISK + r"(?P<attr>wwid|vendor|model):(?P<value>.*)$")
_BLOCK = re.compile(_DISK + r"(?P<attr>block)/(?P<value>[\w-]+)$")  # ls -d: the disk's block device

LIO_COMPANY_ID = "001405"  # LIO's default IEEE company id (wwn/company_id of a backstore)


@dataclass(frozen=True)
class ScsiDisk:
    """One SCSI disk as the kernel shows it: H:C:T:L, block device name, WWID, INQUIRY vendor/model."""

    hctl: str  # 2:0:0:0
    name: str  # sdb
    wwid: str  # naa.6001405…, as the kernel prints it
    vendor: str = ""
    model: str = ""

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    @property
    def host(self) -> str:
        return f"host{self.hctl.split(':')[0]}"


def lio_naa_wwid(unit_serial: str, company_id: str = LIO_COMPANY_ID) -> str:
    """The NAA WWN LIO reports for a backstore with ``unit_serial``, as Linux prints it (``naa.6…``).

    NAA 6 (IEEE Registered Extended), 16 bytes: the company id, then the first 25
    hex digits of the serial (other characters skipped) — ``spc_gen_naa_6h_vendor_specific``
    in the kernel's target_core_spc.c.
    """
    digits = "".join(c for c in unit_serial.lower() if c in "0123456789abcdef")
    if len(digits) < 25:
        raise DriverError(f"unit serial {unit_serial!r} has {len(digits)} hex digits; an NAA WWN needs 25")
    return f"naa.6{company_id.lower()}{digits[:25]}"


def parse_scsi_disks(dump: str) -> list[ScsiDisk]:
    """The dump of :data:`DUMP_COMMAND` → one record per disk that has a block device, by H:C:T:L."""
    values = group_by_device(dump, "hctl", _ATTRIBUTE, _BLOCK)
    disks = []
    for hctl in sorted(values, key=lambda h: tuple(int(n) for n in h.split(":"))):
        attrs = values[hctl]
        if "block" not in attrs:
            continue  # a disk still being attached, or going away
        disks.append(
            ScsiDisk(
                hctl=hctl,
                name=attrs["block"],
                wwid=attrs.get("wwid", ""),
                vendor=attrs.get("vendor", ""),
                model=attrs.get("model", ""),
            )
        )
    return disks


def scsi_disks(executor: Executor) -> list[ScsiDisk]:
    return parse_scsi_disks(executor.run(DUMP_COMMAND, timeout=30).stdout)


def wait_disk(executor: Executor, wwid: str, *, timeout: float = 30.0, hint: str = "") -> ScsiDisk:
    """The SCSI disk whose WWID is ``wwid``, waiting for the kernel to attach it."""
    deadline = time.monotonic() + timeout
    while True:
        found = scsi_disks(executor)
        matching = [d for d in found if d.wwid.lower() == wwid.lower()]
        if len(matching) == 1:
            disk = matching[0]
            plain_name(executor.node, "SCSI disk", disk.name)
            return disk
        if len(matching) > 1:
            names = ", ".join(f"{d.name} ({d.hctl})" for d in matching)
            raise DriverError(
                f"{executor.node}: {len(matching)} SCSI disks have WWID {wwid}: {names}; one LUN is reached"
                " over several paths here (dm-multipath is not used by fabqual): give the link one path"
            )
        if time.monotonic() > deadline:
            seen = ", ".join(f"{d.name} {d.hctl} {d.wwid or 'no WWID'}" for d in found) or "none"
            raise DriverError(
                f"{executor.node}: no SCSI disk with WWID {wwid} after {timeout:.0f} s (seen: {seen})"
                + (f"; {hint}" if hint else "")
            )
        time.sleep(0.5)


# Queue limits of a disk: sysfs attribute under /sys/block/<name>/.
QUEUE_LIMITS = {"max_sectors_kb": "queue/max_sectors_kb", "queue_depth": "device/queue_depth"}


def limit_queue(executor: Executor, journal: Journal, disk: ScsiDisk, limits: dict[str, int]) -> dict[str, str]:
    """Set each of ``limits`` (a key of :data:`QUEUE_LIMITS` → value) on ``disk``, journaled with the
    old value; returns what was set, "old -> new", for the report."""
    done = {}
    for key, value in limits.items():
        path = f"/sys/block/{disk.name}/{QUEUE_LIMITS[key]}"
        old = read(executor, path)
        if old == str(value):
            done[key] = old
            continue
        log_step(executor.node, f"{disk.path} ({disk.wwid}): {key} {old} -> {value}")
        guard = f'[ "$(cat /sys/block/{disk.name}/device/wwid 2>/dev/null)" = {shlex.quote(disk.wwid)} ]'
        undo = f"if {guard}; then echo {shlex.quote(old)} > {path}; fi"  # a disk gone (or renamed) is left alone
        with journal.ahead(executor, f"{key} {old} of {disk.path} ({disk.wwid})", undo):
            write(executor, path, str(value))
        done[key] = f"{old} -> {value}"
    return done
