"""SCSI disks found by WWN: the sysfs dump parser and LIO's NAA WWN, on outputs captured on the lab."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabqual.drivers.scsi_disk import ScsiDisk, lio_naa_wwid, parse_scsi_disks
from fabqual.errors import DriverError
from fabqual.links.fcp import product_id, unit_serial

OUTPUTS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs"
DUMP = (OUTPUTS / "sysfs" / "scsi_disks_fcp_ini.txt").read_text()


def test_the_lab_disk_is_read_with_its_wwid_vendor_and_model() -> None:
    """The fcp0 LUN as the initiator's kernel shows it (padding stripped)."""
    assert parse_scsi_disks(DUMP) == [
        ScsiDisk("0:0:0:0", "sda", "naa.6001405ae981a0f454f51078898cf5be", "LIO-ORG", product_id("fcp0"))
    ]
    assert parse_scsi_disks(DUMP)[0].path == "/dev/sda" and parse_scsi_disks(DUMP)[0].host == "host0"


def test_the_wwn_is_known_before_the_lun_exists() -> None:
    """LIO's NAA 6 WWN from the unit serial fabqual sets equals what the kernel (sysfs wwid) and an
    independent client (sg_inq -p 0x83, the NAA designator) read from the LUN."""
    wwid = lio_naa_wwid(unit_serial("fcp0"))
    assert wwid == parse_scsi_disks(DUMP)[0].wwid
    inquiry = (OUTPUTS / "sg3_utils" / "sg_inq_vpd83_lio_fcp.txt").read_text()
    naa = re.search(r"NAA 6.*?\[0x([0-9a-f]+)\]", inquiry, re.DOTALL)
    assert naa is not None and wwid == f"naa.{naa[1]}"


def test_a_disk_without_its_block_device_yet_is_not_listed() -> None:
    """A disk still attaching (no block/ entry) is skipped, not a record with an empty name."""
    assert parse_scsi_disks("\n".join(line for line in DUMP.splitlines() if "/block/" not in line)) == []
    assert parse_scsi_disks("") == []


def test_a_serial_too_short_for_an_naa_wwn_is_refused() -> None:
    with pytest.raises(DriverError, match="has 4 hex digits; an NAA WWN needs 25"):
        lio_naa_wwid("beef")


def test_serials_and_product_ids_are_fixed_per_link_and_fit_inquiry() -> None:
    """The same link gets the same LUN identity every run; another link another; product ids fit 16 bytes."""
    assert unit_serial("fcp0") == unit_serial("fcp0") != unit_serial("fcp1")
    assert re.fullmatch(r"[0-9a-f]{32}", unit_serial("fcp0"))
    assert len(product_id("a-very-long-link-name")) == 16
