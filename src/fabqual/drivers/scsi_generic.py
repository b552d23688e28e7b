"""SCSI generic devices (``/dev/sgN``) found by what they say they are.

A tunnel LUN is a peripheral type 6 device, so Linux attaches only ``sg`` to it:
the initiator finds it by INQUIRY vendor/model as the kernel cached them in
``/sys/class/scsi_generic/sgN/device/{vendor,model,type}``. :func:`parse_sg_devices`
is pure and tested on dumps captured in the emulated lab.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from fabqual.drivers.sysfs_dump import group_by_device
from fabqual.errors import DriverError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name

ATTRIBUTES = ("vendor", "model", "type", "rev")
DUMP_COMMAND = (
    "grep -H . " + " ".join(f"/sys/class/scsi_generic/*/device/{a}" for a in ATTRIBUTES) + " 2>/dev/null;"
    " for d in /sys/class/scsi_generic/*; do [ -e $d/device ] &&"
    ' echo "$d/hctl:$(basename $(readlink -f $d/device))"; done 2>/dev/null; true'
)
_LINE = re.compile(r"^/sys/class/scsi_generic/(?P<sg>sg\d+)/(?:device/)?(?P<attr>[a-z]+):(?P<value>.*)$")


@dataclass(frozen=True)
class SgDevice:
    """One ``/dev/sgN`` with the identity the kernel read from its INQUIRY data."""

    name: str  # sg0
    vendor: str
    model: str
    device_type: int  # peripheral device type: 0 disk, 5 CD-ROM, 6 scanner
    revision: str = ""
    hctl: str = ""  # 0:0:0:0

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    @property
    def host(self) -> str:
        return f"host{self.hctl.split(':')[0]}" if self.hctl else ""


def parse_sg_devices(dump: str) -> list[SgDevice]:
    """The dump of :data:`DUMP_COMMAND` → one record per sg device, by number."""
    values = group_by_device(dump, "sg", _LINE)
    devices = []
    for name in sorted(values, key=lambda n: int(n[2:])):
        attrs = values[name]
        if not attrs.get("type", "").isdigit():
            continue  # a device going away between the grep and its attributes
        devices.append(
            SgDevice(
                name=name,
                vendor=attrs.get("vendor", ""),
                model=attrs.get("model", ""),
                device_type=int(attrs["type"]),
                revision=attrs.get("rev", ""),
                hctl=attrs.get("hctl", ""),
            )
        )
    return devices


def sg_devices(executor: Executor) -> list[SgDevice]:
    return parse_sg_devices(executor.run(DUMP_COMMAND, timeout=30).stdout)


def rescan(executor: Executor, host: str) -> None:
    """Ask the SCSI host to scan for new targets and LUNs."""
    log_step(executor.node, f"rescan SCSI {host}")
    scan = shlex.quote(f"/sys/class/scsi_host/{plain_name(executor.node, 'SCSI host', host)}/scan")
    executor.run(f"echo '- - -' > {scan}", timeout=60)


def wait_sg_device(
    executor: Executor,
    *,
    vendor: str,
    model: str,
    host: str | None = None,
    timeout: float = 30.0,
    rescan_after: float = 5.0,
) -> SgDevice:
    """The sg device with this INQUIRY vendor/model (on ``host`` if given), waiting for it to appear.

    If it has not appeared after ``rescan_after`` seconds the host is rescanned
    once (a LUN mapped after the login is only seen after a scan).
    """
    start = time.monotonic()
    rescanned = False
    while True:
        found = sg_devices(executor)
        for device in found:
            if device.vendor == vendor and device.model == model and (host is None or device.host == host):
                return device
        elapsed = time.monotonic() - start
        if host and not rescanned and elapsed > rescan_after:
            rescan(executor, host)
            rescanned = True
        if elapsed > timeout:
            seen = ", ".join(f"{d.name} {d.vendor!r} {d.model!r} type {d.device_type}" for d in found)
            raise DriverError(
                f"{executor.node}: no SCSI generic device {vendor!r} {model!r}"
                + (f" on {host}" if host else "")
                + f" after {timeout:.0f} s (seen: {seen or 'none'}); is the target exporting it to this initiator?"
            )
        time.sleep(0.3)


_SG_DD_RATE = re.compile(r"time to transfer data:\s*(?P<secs>[\d.]+)\s*secs?\s*at\s*(?P<rate>[\d.]+)\s*MB/sec")


def parse_sg_dd_rate(output: str) -> tuple[float, float]:
    """Seconds and MB/s from ``sg_dd ... time=1`` (MB = 10**6 bytes, as sg_dd counts)."""
    match = _SG_DD_RATE.search(output)
    if not match or float(match["rate"]) <= 0:
        raise ParseError("sg_dd", "no non-zero 'time to transfer data: … MB/sec' line", output)
    return float(match["secs"]), float(match["rate"])
