"""The sysfs-dump grouping the SCSI disk, sg, fc_host and remote-port parsers share, on real captures."""

from __future__ import annotations

import re
from pathlib import Path

from fabqual.drivers.sysfs_dump import group_by_device

OUTPUTS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs"
# Origins: sysfs/scsi_disks_fcp_ini.txt.origin, fcoe/README.md.
DISKS = (OUTPUTS / "sysfs" / "scsi_disks_fcp_ini.txt").read_text()
FC_HOST = (OUTPUTS / "fcoe" / "fc_host_ini.txt").read_text()

_DISK = r"^/sys/class/scsi_disk/(?P<hctl>[\d:]+)/device/"
ATTRIBUTE = re.compile(_DISK + r"(?P<attr>wwid|vendor|model):(?P<value>.*)$")
BLOCK = re.compile(_DISK + r"(?P<attr>block)/(?P<value>[\w-]+)$")
FC_LINE = re.compile(r"^/sys/class/fc_host/(?P<host>[^/]+)/(?P<attr>[a-z_]+):(?P<value>.*)$")


def test_grep_and_ls_lines_of_one_disk_land_in_one_group_padding_stripped() -> None:
    """The lab's LUN: three ``grep -H .`` attributes (LIO pads vendor and model with blanks) and the
    ``ls -d`` line of its block device, read through two patterns into one device."""
    assert group_by_device(DISKS, "hctl", ATTRIBUTE, BLOCK) == {
        "0:0:0:0": {
            "wwid": "naa.6001405ae981a0f454f51078898cf5be",
            "vendor": "LIO-ORG",
            "model": "fabqual fcp0",
            "block": "sda",
        }
    }


def test_a_value_holding_colons_and_blanks_is_kept_whole() -> None:
    """Only the first colon after the attribute splits: ``port_type`` and ``symbolic_name`` keep theirs."""
    host = group_by_device(FC_HOST, "host", FC_LINE)["host0"]
    assert host["port_type"] == "NPort (fabric via point-to-point)"
    assert host["symbolic_name"] == "fcoe v0.1 over eth1"
    assert list(host) == ["node_name", "port_name", "port_state", "speed", "port_type", "fabric_name", "symbolic_name"]


def test_lines_no_pattern_matches_are_skipped_and_devices_keep_their_first_seen_order() -> None:
    """A pattern that matches none of the capture gives nothing; devices are grouped as they come,
    and a repeated attribute takes its last value."""
    assert group_by_device(DISKS, "hctl", ATTRIBUTE) == {
        "0:0:0:0": {"wwid": "naa.6001405ae981a0f454f51078898cf5be", "vendor": "LIO-ORG", "model": "fabqual fcp0"}
    }
    assert group_by_device(FC_HOST, "hctl", ATTRIBUTE, BLOCK) == {}
    renamed = FC_HOST.replace("host0", "host7") + FC_HOST + "/sys/class/fc_host/host7/speed:10 Gbit\n"
    grouped = group_by_device(renamed, "host", FC_LINE)
    assert list(grouped) == ["host7", "host0"]
    assert grouped["host7"]["speed"] == "10 Gbit" and grouped["host0"]["speed"] == "unknown"
