"""SG_IO header layout and sg device lookup.

The header offsets are compared with literals from gcc's ``offsetof`` on Debian 12's
``<scsi/sg.h>`` (``sg_io_hdr 88 status 64 resid 72 info 80 duration 76``). No sg
device exists on the development host; the lookup runs on a directory laid out
like ``/sys/class/scsi_generic`` (``sgN/device/{vendor,model}``, values padded as
the kernel prints them).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from fabqual.errors import DriverError
from fabqual.ipofc import sg_io


def test_header_matches_compiled_struct() -> None:
    """ctypes' sg_io_hdr has the size and offsets gcc computes for the kernel's struct."""
    hdr = sg_io.SgIoHdr
    assert ctypes.sizeof(hdr) == 88
    assert (hdr.status.offset, hdr.resid.offset, hdr.duration.offset, hdr.info.offset) == (64, 72, 76, 80)


def test_find_sg_by_vendor_and_model(tmp_path: Path) -> None:
    """Devices are matched on the INQUIRY vendor/model sysfs shows (trailing spaces stripped), in sgN order."""
    for n, (vendor, model) in {
        0: ("ATA     ", "QEMU HARDDISK   "),
        2: ("FABQUAL ", "IPoFC tunnel    "),
        10: ("FABQUAL ", "IPoFC tunnel    "),
    }.items():
        dev = tmp_path / f"sg{n}" / "device"
        dev.mkdir(parents=True)
        (dev / "vendor").write_text(vendor + "\n")
        (dev / "model").write_text(model + "\n")
    (tmp_path / "sg3").mkdir()  # a device that vanished mid-scan
    assert sg_io.find_sg("FABQUAL", "IPoFC tunnel", tmp_path) == ["/dev/sg2", "/dev/sg10"]
    assert sg_io.find_sg("FABQUAL", "other", tmp_path) == []


def test_bad_requests_are_refused_before_the_kernel() -> None:
    """A bidirectional request or a CDB length sg cannot take is refused with a clear error."""
    with pytest.raises(DriverError, match="bidirectional"):
        sg_io.execute(-1, bytes(6), data_out=b"x", data_in_len=1)
    with pytest.raises(DriverError, match="5 bytes"):
        sg_io.execute(-1, bytes(5))
    with pytest.raises(DriverError, match="cannot open /nonexistent/sg0"):
        sg_io.open_sg("/nonexistent/sg0")
