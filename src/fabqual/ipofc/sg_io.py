"""SG_IO initiator: send a CDB to ``/dev/sgN`` and get status, sense, data and residual back.

Stdlib only (runs in the lab guests). ``fcntl.ioctl`` on a mutable header of 88
bytes (≤ 1024) copies it and releases the GIL during the call, so a held READ in
one thread does not block the others (research note §4.2). The header layout is
``struct sg_io_hdr`` (LP64): size 88, status at 64, duration 76, resid 72, info
80 — checked against gcc's ``offsetof`` on Debian 12's ``<scsi/sg.h>``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from fabqual.errors import DriverError
from fabqual.ipofc.scsi import Status

SG_IO = 0x2285
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
SG_INFO_CHECK = 0x1
SENSE_LEN = 96


class SgIoHdr(ctypes.Structure):
    """struct sg_io_hdr (include/scsi/sg.h)."""

    _fields_ = [
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    ]


@dataclass(frozen=True)
class SgResult:
    """Outcome of one SG_IO: SAM status, transport statuses, sense, data-in and residual."""

    status: int
    host_status: int
    driver_status: int
    sense: bytes
    data_in: bytes
    resid: int
    duration_ms: int

    @property
    def transport_ok(self) -> bool:
        """True when the command reached the target and came back (host_status 0, i.e. not DID_*)."""
        return self.host_status == 0

    @property
    def good(self) -> bool:
        return self.transport_ok and self.status == Status.GOOD


def execute(fd: int, cdb: bytes, *, data_out: bytes = b"", data_in_len: int = 0, timeout_ms: int = 30_000) -> SgResult:
    """Issue one command synchronously on an open sg fd (blocking this thread only)."""
    if data_out and data_in_len:
        raise DriverError("SG_IO with both data-out and data-in (bidirectional) is not supported")
    if not 6 <= len(cdb) <= 16:
        raise DriverError(f"CDB of {len(cdb)} bytes: sg accepts 6..16 here")
    cmd = ctypes.create_string_buffer(bytes(cdb), len(cdb))
    sense = ctypes.create_string_buffer(SENSE_LEN)
    size = len(data_out) or data_in_len
    buf = ctypes.create_string_buffer(bytes(data_out), size) if size else None
    hdr = SgIoHdr(
        interface_id=ord("S"),
        dxfer_direction=SG_DXFER_TO_DEV if data_out else SG_DXFER_FROM_DEV if data_in_len else SG_DXFER_NONE,
        cmd_len=len(cdb),
        mx_sb_len=SENSE_LEN,
        dxfer_len=size,
        dxferp=ctypes.addressof(buf) if buf is not None else None,
        cmdp=ctypes.addressof(cmd),
        sbp=ctypes.addressof(sense),
        timeout=timeout_ms,
    )
    try:
        fcntl.ioctl(fd, SG_IO, hdr)  # mutable ctypes buffer: filled in place
    except OSError as err:
        raise DriverError(f"SG_IO failed on fd {fd}: {err.strerror} (errno {err.errno})") from err
    got = size - hdr.resid if data_in_len else 0
    return SgResult(
        status=hdr.status,
        host_status=hdr.host_status,
        driver_status=hdr.driver_status,
        sense=sense.raw[: hdr.sb_len_wr],
        data_in=buf.raw[: max(0, got)] if buf is not None and data_in_len else b"",
        resid=hdr.resid,
        duration_ms=hdr.duration,
    )


def find_sg(vendor: str, model: str, sysfs: Path = Path("/sys/class/scsi_generic")) -> list[str]:
    """``/dev/sgN`` paths whose SCSI device reports this INQUIRY vendor and model (sysfs strips padding)."""
    found = []
    for entry in sorted(sysfs.glob("sg*"), key=lambda p: int(p.name[2:]) if p.name[2:].isdigit() else 0):
        dev = entry / "device"
        try:
            v = (dev / "vendor").read_text().strip()
            m = (dev / "model").read_text().strip()
        except OSError:
            continue
        if v == vendor.strip() and m == model.strip():
            found.append(f"/dev/{entry.name}")
    return found


def open_sg(path: str) -> int:
    """Open an sg device for SG_IO; the error names the device and what to check."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise DriverError(f"cannot open {path}: {err.strerror}; is the sg module loaded and the LUN present?") from err


if __name__ == "__main__":
    # ``python3 -m fabqual.ipofc.sg_io --sg ... --tun ...`` is the link driver's first spelling
    # of the initiator daemon; the CLI lives in fabqual.ipofc.initiator_daemon.
    import sys

    from fabqual.ipofc.initiator_daemon import main

    sys.exit(main())
