"""Scratch safety without a lab: the probe parser and verdict on real captures, identity matching, topology keys.

The captures in fixtures/outputs/blockdev are the probe script's real output
on the emulated lab guest and on the development host (each ``.origin`` says
where and in what state); the lab self-test (test_scratch_lab.py) runs the same
script live.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabqual.doctor import run_doctor
from fabqual.drivers.blockdev import Identity, hazards, matches, parse_identities, parse_probe
from fabqual.errors import ParseError, TopologyError
from fabqual.executors import LocalExecutor
from fabqual.topology import parse_topology
from tests.self.local_topology import LOCAL_RACK

CAPTURES = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "blockdev"


def probe(name: str) -> Any:
    return parse_probe((CAPTURES / f"{name}.txt").read_text())


def test_clean_device_is_safe() -> None:
    """A fresh null_blk: found, one part, no mounts/holders/swap on it, blkid finds nothing (exit 2)."""
    clean = probe("clean_nullb")
    assert clean.resolved == "/dev/nullb30" and [p.name for p in clean.parts] == ["nullb30"]
    assert clean.blkid == {} and clean.wipefs == () and clean.unreadable == ()
    assert hazards(clean).safe


def test_mounted_ext4_is_busy_and_signed() -> None:
    """Mounted is found through mountinfo's major:minor; ext4 through blkid -p and wipefs (with its offset)."""
    found = hazards(probe("ext4_mounted"))
    assert found.busy == ("it is mounted at /run/cap-mnt",)
    assert found.signatures == ("blkid -p finds ext4 (filesystem)", "wipefs lists ext4 at 0x438")


def test_gpt_is_a_signature_with_its_backup_and_pmbr() -> None:
    found = hazards(probe("gpt"))
    assert not found.busy
    assert found.signatures == (
        "blkid -p finds a gpt partition table",
        "wipefs lists gpt at 0x1000, gpt at 0xfff000, PMBR at 0x1fe",
    )


def test_dm_holder_and_swap_are_busy() -> None:
    assert hazards(probe("dm_held")).busy == ("it is held by dm-0 (device-mapper, LVM or md)",)
    swap = hazards(probe("swap"))
    assert swap.busy == ("it is in use as swap",) and "blkid -p finds swap (other)" in swap.signatures


def test_mounted_partition_makes_the_whole_disk_busy() -> None:
    """The topology names the disk; a mounted partition of it is found through the disk's partitions."""
    partitioned = probe("partition_mounted")
    assert [p.name for p in partitioned.parts] == ["loop0", "loop0p1"]
    assert hazards(partitioned).busy == ("its partition loop0p1 is mounted at /run/cap-mnt2",)


def test_root_disk_is_busy_and_unreadable_signatures_are_not_nothing() -> None:
    """The dev host's root disk: / is on it (findmnt + lsblk -s), mounted twice; and its blkid exits 2
    ('nothing found') while printing an error — that must read as 'cannot read', never as 'clean'."""
    root = probe("host_root_vda")
    assert root.roots == {"/": ("254:0",)} and root.identity.serial == "overlayblk"
    busy = hazards(root).busy
    assert busy[:3] == ("/ (the node's root file system) is on it", "it is mounted at /", "it is mounted at /run/netns")
    assert "blkid -p cannot read it (blkid: error: /dev/vda: Operation not permitted)" in busy
    assert any(reason.startswith("wipefs cannot read it (wipefs: error: /dev/vda") for reason in busy)


def test_by_id_name_resolves_with_identity_and_links() -> None:
    """A udev by-id link (scsi_debug) resolves to the kernel disk; WWID from device/wwid, serial from VPD 0x80."""
    disk = probe("scsi_debug_by_id")
    assert disk.resolved == "/dev/sda"
    assert disk.identity == Identity(wwid="naa.33333330000007d0", serial="2000")
    assert disk.links == ("/dev/disk/by-id/scsi-333333330000007d0", "/dev/disk/by-id/wwn-0x33333330000007d0")
    assert hazards(disk).safe


def test_path_leading_nowhere_has_no_parts() -> None:
    assert not parse_probe("@@ resolved\n/dev/nope\n").exists


def test_probe_without_exit_lines_is_a_parse_error() -> None:
    """A probe cut short (no blkid exit status line) cannot be mistaken for a clean device."""
    cut = (CAPTURES / "clean_nullb.txt").read_text().split("@@ blkid")[0] + "@@ blkid\n"
    with pytest.raises(ParseError, match="exit status line is missing"):
        parse_probe(cut)


def test_ambivalent_blkid_is_a_signature() -> None:
    """blkid -p exits 8 when signatures contradict each other (e.g. a stale one under a new one)."""
    text = (CAPTURES / "clean_nullb.txt").read_text().replace("@@ blkid\nexit=2", "@@ blkid\nexit=8")
    assert hazards(parse_probe(text)).signatures == ("blkid -p finds several signatures that contradict each other",)


def test_missing_util_linux_tool_makes_the_device_unprovable() -> None:
    """Without findmnt/lsblk the / and /boot check would be silently empty: a missing tool is a reason."""
    text = (CAPTURES / "clean_nullb.txt").read_text().replace("@@ identity", "@@ missing\nfindmnt\n@@ identity")
    assert hazards(parse_probe(text)).busy == ("findmnt is missing on the node (install util-linux)",)


def test_list_finds_disks_by_identity() -> None:
    disks = parse_identities((CAPTURES / "list_disks.txt").read_text())
    assert disks["sda"].wwid == "naa.33333330000007d0" and disks["nullb30"] == Identity()
    assert [name for name, ident in disks.items() if matches(ident, "wwid", "naa.33333330000007d0")] == ["sda"]


@pytest.mark.parametrize(
    "key,wanted,identity,expected",
    [
        ("wwid", "naa.33333330000007d0", Identity(wwid="naa.33333330000007d0"), True),
        ("wwid", "0x33333330000007D0", Identity(wwid="naa.33333330000007d0"), True),  # as in by-id's wwn-0x...
        ("wwid", "naa.33333330000007d1", Identity(wwid="naa.33333330000007d0"), False),
        ("wwid", "naa.1", Identity(), False),  # a disk that reports no WWID matches nothing
        ("serial", "2000", Identity(serial="2000"), True),
        ("serial", "200", Identity(serial="2000"), False),
        ("eui", "0025385b71b01234", Identity(eui="00 25 38 5b 71 b0 12 34"), True),  # sysfs eui is spaced bytes
        ("eui", "eui.0025385B71B01234", Identity(wwid="eui.0025385b71b01234"), True),
        ("eui", "0025385b71b01234", Identity(eui="00 25 38 5b 71 b0 12 35"), False),
    ],
)
def test_identity_matching(key: str, wanted: str, identity: Identity, expected: bool) -> None:
    assert matches(identity, key, wanted) is expected


# --- topology: how a scratch device is named ---------------------------------------------

BASE: dict[str, Any] = {
    "name": "rack",
    "nodes": [{"name": "tgt", "address": "10.0.0.1", "roles": ["nvme_target"], "nvme_target": {"backend": "kernel"}}],
    "links": [],
}


def load(*devices: dict[str, Any]) -> Any:
    data = {**BASE, "nodes": [{**BASE["nodes"][0], "scratch_devices": list(devices)}]}
    return parse_topology(yaml.safe_dump(data), "rack.yaml").node("tgt").scratch_devices


def test_stable_names_load() -> None:
    """A by-id path, a WWID, a serial and an EUI each name a device; wipe_signatures defaults to false."""
    by_id, wwid, serial, eui = load(
        {"name": "a", "path": "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"},
        {"name": "b", "wwid": "naa.5000c500a1b2c3d4", "wipe_signatures": True},
        {"name": "c", "serial": "S4EVNX0N123456"},
        {"name": "d", "eui": "00:25:38:5b:71:b0:12:34"},
    )
    assert [d.declared for d in (by_id, wwid, serial, eui)] == [
        "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
        "wwid:naa.5000c500a1b2c3d4",
        "serial:S4EVNX0N123456",
        "eui:00:25:38:5b:71:b0:12:34",
    ]
    assert (by_id.wipe_signatures, wwid.wipe_signatures) == (False, True)


@pytest.mark.parametrize(
    "device,expected",
    [
        ({"name": "a"}, "nodes.tgt.scratch_devices[0]: name the device with exactly one of path, wwid, serial, eui"),
        (
            {"name": "a", "path": "/dev/sdb", "serial": "X1"},
            "nodes.tgt.scratch_devices[0]: name the device with exactly one of path, wwid, serial, eui"
            " (got path and serial)",
        ),
        (
            {"name": "a", "serial": "X1", "create": "null_blk"},
            "nodes.tgt.scratch_devices[0].path: create: null_blk makes the device at a path; give path",
        ),
        ({"name": "a", "eui": "0025385b"}, "nodes[0].scratch_devices[0].eui: an EUI is 8 bytes (EUI-64) or 16 bytes"),
        ({"name": "a", "serial": "S1\nrm -rf /"}, "nodes[0].scratch_devices[0].serial: a serial or WWID is printable"),
        ({"name": "a", "path": "/dev/sdb", "wipe_signatures": "yes"}, "expected true or false, got 'yes'"),
    ],
)
def test_bad_scratch_naming_is_one_line(device: dict[str, Any], expected: str) -> None:
    with pytest.raises(TopologyError) as caught:
        load(device)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_same_device_twice_is_refused_at_load() -> None:
    with pytest.raises(TopologyError, match=r"device 'wwid:naa\.1' is used 2 times"):
        load({"name": "a", "wwid": "naa.1"}, {"name": "b", "wwid": "naa.1"})


# --- the doctor: the same verdict before a run, without changing anything ----------------


def _root_source() -> str:
    source = subprocess.run(["findmnt", "-rnv", "-o", "SOURCE", "-M", "/"], capture_output=True, text=True).stdout
    if not source.strip().startswith("/dev/"):
        pytest.skip(f"this machine's / is not on a block device ({source.strip() or 'none'}): nothing to refuse")
    return source.strip()


def test_doctor_refuses_this_machines_root_disk_as_scratch() -> None:
    """Declared as scratch (even with wipe_signatures: true), the disk under this machine's / is a doctor
    problem naming the device and why, blocking both links; the check only reads (blkid -p, wipefs listing)."""
    root = _root_source()
    rack = LOCAL_RACK.replace(
        "{name: nullb0, path: /dev/nullb0, create: null_blk}", f"{{name: nullb0, path: {root}, wipe_signatures: true}}"
    )
    report = run_doctor(parse_topology(rack, "local.yaml"), lambda name: LocalExecutor(name))
    (problem,) = [p for p in report.problems if p.what.startswith("nullb0 (")]
    assert problem.what.startswith(f"nullb0 ({root} → ") and "/ (the node's root file system) is on it" in problem.what
    assert problem.fix.startswith("free it") and problem.links == ("fc0", "roce0")


def test_doctor_names_a_scratch_device_that_is_not_there() -> None:
    rack = LOCAL_RACK.replace("{name: nullb0, path: /dev/nullb0, create: null_blk}", "{name: nullb0, serial: NOPE-1}")
    report = run_doctor(parse_topology(rack, "local.yaml"), lambda name: LocalExecutor(name))
    lines = [p.line() for p in report.problems if "NOPE-1" in p.line()]
    assert len(lines) == 1 and lines[0].startswith("here: scratch device nullb0: no disk reports serial 'NOPE-1'")
