"""Scratch safety on the running lab: real kernels, real blkid/wipefs, real mounts, swap and device-mapper.

Each test makes its own memory-backed null_blk devices on ``tgt`` (nullb20 and
up, never the lab's nullb0/nullb1 that the links export) through the scratch
driver itself, puts on them what a rack's disks carry (ext4, a GPT, a mount, a
dm holder, swap), and shows the driver refuses them without writing a byte
(sha256 of the whole device before and after). Stable names come from
``scsi_debug``: a SCSI disk with a WWID for which the guest's own udev makes
/dev/disk/by-id/wwn-... and scsi-... links, exactly as for a rack's SAS/FC disk.
Teardown undoes everything (mounts, swap, dm, loop, scsi_debug, null_blk) even
when a test fails.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from fabqual.drivers.journal import Journal
from fabqual.drivers.scratch import SafeScratch, ensure_scratch, prove_safe
from fabqual.errors import LabError, UnsafeDeviceError
from fabqual.executors.base import Executor
from fabqual.topology.model import ScratchDevice
from tests.self.lab.gpt import GPT_SCRIPT

SIZE_MB = 16  # small: TCG hashes and fio-writes every byte


@dataclass
class Guest:
    """``tgt`` with a journal for the null_blk devices and shell undo steps for everything else."""

    executor: Executor
    journal: Journal = field(default_factory=Journal)
    undo: list[str] = field(default_factory=list)

    def sh(self, command: str, *, undo: str | None = None, timeout: float = 120) -> str:
        if undo:
            self.undo.append(undo)
        return self.executor.run(command, timeout=timeout).stdout

    def null_blks(self, *numbers: int, wipe_signatures: bool = False) -> list[ScratchDevice]:
        """Fresh memory-backed null_blk devices as the scratch driver makes them, in one round trip
        (each bring-up step costs ~0.5 s here); the driver's own creation is tested below."""
        config = "/sys/kernel/config/nullb"
        steps = ["modprobe null_blk nr_devices=0"]
        for n in numbers:
            item = f"{config}/nullb{n}"
            steps.append(
                f"mkdir {item} && echo {SIZE_MB} > {item}/size && echo 1 > {item}/memory_backed"
                f" && echo 4096 > {item}/blocksize && echo 1 > {item}/power"
            )
            self.undo.insert(0, f"echo 0 > {item}/power; rmdir {item}")  # after everything built on it
        self.sh(" && ".join(steps) + " && udevadm settle")
        return [
            ScratchDevice(name=f"nullb{n}", path=f"/dev/nullb{n}", wipe_signatures=wipe_signatures) for n in numbers
        ]

    def shas(self, devices: list[ScratchDevice]) -> dict[str, str]:
        """sha256 of each whole device, in one round trip."""
        lines = self.sh("sha256sum " + " ".join(shlex.quote(d.declared) for d in devices)).splitlines()
        return {path: digest for digest, path in (line.split() for line in lines)}

    def mount(self, device: str, mountpoint: str) -> None:
        """Mount ``device`` (ext4) read-only at ``mountpoint``; teardown unmounts it (and removes a new directory)."""
        made = self.sh(f"[ -d {mountpoint} ] || {{ mkdir {mountpoint} && echo made; }}").strip()
        if made:
            self.undo.append(f"rmdir {mountpoint}")
        # Read-only: a read-write ext4 mount writes its own superblock and journal, which would
        # change the checksums that prove fabqual wrote nothing.
        self.sh(f"mount -o ro {device} {mountpoint}", undo=f"umount {mountpoint}")

    def blkid(self, path: str) -> str:
        return self.executor.run(f"blkid -p -o export {shlex.quote(path)}", check=False).stdout

    def write_gpt(self, path: str) -> None:
        self.executor.run(f"python3 - {shlex.quote(path)}", stdin=GPT_SCRIPT, timeout=60)


@pytest.fixture()
def guest(ssh: dict[str, Executor]) -> Iterator[Guest]:
    here = Guest(ssh["tgt"])
    try:
        yield here
    finally:
        for command in reversed(here.undo):
            here.executor.run(command, timeout=120, check=False)
        here.journal.undo_all()


def refusal(executor: Executor, device: ScratchDevice) -> str:
    with pytest.raises(UnsafeDeviceError) as caught:
        prove_safe(executor, device)
    text = str(caught.value)
    assert "\n" not in text, "a refusal is one line"
    assert text.startswith(f"the rack offers an unsafe scratch device: tgt: {device.name} ({device.declared} → ")
    return text


def test_ext4_gpt_and_mounted_devices_are_refused_and_untouched(guest: Guest) -> None:
    """The issue's three: ext4 on one null_blk, a GPT on another, a third mounted; each is refused with
    its reason and how to fix it, and not one byte of any of them changes."""
    ext4, gpt, mounted = devices = guest.null_blks(20, 21, 22)
    # Inode tables and journal initialised now, not by ext4's lazy-init thread after mounting (it writes).
    guest.sh("mkfs.ext4 -q /dev/nullb20 && mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 /dev/nullb22")
    guest.write_gpt("/dev/nullb21")
    guest.mount("/dev/nullb22", "/run/fabqual-test-mnt")
    guest.sh("sync")
    before = guest.shas(devices)

    text = refusal(guest.executor, ext4)
    assert "blkid -p finds ext4 (filesystem)" in text and "wipefs lists ext4 at 0x438" in text
    assert "wipe it yourself (wipefs --all /dev/nullb20)" in text and "wipe_signatures: true" in text
    assert "blkid -p finds a gpt partition table" in refusal(guest.executor, gpt)
    text = refusal(guest.executor, mounted)
    assert "it is mounted at /run/fabqual-test-mnt" in text and "free it (unmount" in text

    assert guest.shas(devices) == before


def test_busy_devices_are_refused_even_with_the_wipe_override(guest: Guest) -> None:
    """Mounted (through a partition), /boot, dm holder, swap: wipe_signatures: true never wipes a busy device."""
    held, swap, boot = guest.null_blks(23, 24, 25, wipe_signatures=True)
    table = "0 $(blockdev --getsz /dev/nullb23) linear /dev/nullb23 0"
    guest.sh(f'dmsetup create fabqual-test-held --table "{table}"', undo="dmsetup remove fabqual-test-held")
    guest.sh("mkswap /dev/nullb24 >/dev/null && swapon /dev/nullb24", undo="swapoff /dev/nullb24")
    guest.sh("mkfs.ext4 -q /dev/nullb25")
    guest.mount("/dev/nullb25", "/boot")
    # A loop disk with a GPT whose first partition is mounted: the whole disk is what a topology names.
    guest.sh(f"truncate -s {SIZE_MB}M /run/fabqual-test.img", undo="rm -f /run/fabqual-test.img")
    guest.write_gpt("/run/fabqual-test.img")
    loop = guest.sh("losetup -P -f --show /run/fabqual-test.img").strip()
    guest.undo.append(f"losetup -d {loop}")
    guest.sh(f"udevadm settle; mkfs.ext4 -q {loop}p1")
    guest.mount(f"{loop}p1", "/run/fabqual-test-mnt")
    partitioned = ScratchDevice(name="loopdisk", path=loop, wipe_signatures=True)
    devices = [held, swap, boot, partitioned]
    before = guest.shas(devices)

    assert "it is held by dm-" in refusal(guest.executor, held)
    assert "it is in use as swap" in refusal(guest.executor, swap)
    text = refusal(guest.executor, boot)
    assert "/boot (the node's boot file system) is on it" in text and "it is mounted at /boot" in text
    text = refusal(guest.executor, partitioned)
    assert f"its partition {loop.removeprefix('/dev/')}p1 is mounted at /run/fabqual-test-mnt" in text

    assert guest.shas(devices) == before


def test_wipe_signatures_wipes_and_accepts_and_is_logged(guest: Guest, caplog: pytest.LogCaptureFixture) -> None:
    """With wipe_signatures: true an unused device's signatures are wiped (a logged step) and it is accepted;
    the next run finds it clean without the override."""
    (device,) = guest.null_blks(26, wipe_signatures=True)
    guest.sh("mkfs.ext4 -q /dev/nullb26")
    with caplog.at_level(logging.INFO, logger="fabqual.steps"):
        safe = prove_safe(guest.executor, device)
    assert safe.wiped == ("ext4 at 0x438",) and "signatures wiped" in safe.fact()
    assert any("wipe signatures of scratch device nullb26" in r.getMessage() for r in caplog.records)
    assert "TYPE=" not in guest.blkid("/dev/nullb26")
    again = prove_safe(guest.executor, ScratchDevice(name="nullb26", path="/dev/nullb26"))
    assert again.wiped == ()


def test_second_run_accepts_what_a_run_wrote_and_refuses_what_it_refused(guest: Guest) -> None:
    """fio's verified writes (what the write rows do) leave no signature: the device is accepted again.
    A refused device stays refused; a create: null_blk device that already exists with data is refused."""
    created = ScratchDevice(name="nullb27", path="/dev/nullb27", create="null_blk", size_mb=SIZE_MB)
    made = ensure_scratch(guest.executor, guest.journal, created)  # the driver's own null_blk: created, checked
    assert made.created and made.device == "/dev/nullb27" and "created by fabqual" in made.fact()
    written = ScratchDevice(name="nullb27", path="/dev/nullb27")
    guest.sh(
        "fio --name=w --filename=/dev/nullb27 --rw=write --bs=128k --direct=1 --verify=crc32c --do_verify=1"
        " --output-format=terse >/dev/null",
        timeout=300,
    )
    assert guest.blkid("/dev/nullb27").strip() == ""
    assert prove_safe(guest.executor, written).device == "/dev/nullb27"

    (taken,) = guest.null_blks(28)
    guest.sh("mkfs.ext4 -q /dev/nullb28")
    first = refusal(guest.executor, taken)
    again = ScratchDevice(name="nullb28", path="/dev/nullb28", create="null_blk", size_mb=SIZE_MB)
    with pytest.raises(UnsafeDeviceError) as caught:
        ensure_scratch(guest.executor, guest.journal, again)  # exists already: checked, not recreated
    assert str(caught.value) == first


def test_stable_names_resolve_and_are_recorded(guest: Guest, caplog: pytest.LogCaptureFixture) -> None:
    """A by-id name made by udev, the WWID, and the kernel name all lead to the same disk; the verdict records
    declared → kernel device and the WWID; only the kernel name draws a warning naming the by-id one."""
    guest.sh("modprobe scsi_debug dev_size_mb=16 && udevadm settle", undo="rmmod scsi_debug")
    by_id = guest.sh("ls /dev/disk/by-id/wwn-0x*").split()
    assert len(by_id) == 1, by_id
    kernel = guest.sh(f"readlink -f {by_id[0]}").strip()
    wwid = guest.sh(f"cat /sys/class/block/{kernel.removeprefix('/dev/')}/device/wwid").strip()

    named = prove_safe(guest.executor, ScratchDevice(name="disk", path=by_id[0]))
    assert (named.device, named.identity.wwid) == (kernel, wwid)
    assert named.fact().startswith(f"{by_id[0]} → {kernel} (serial ") and f"wwid {wwid}" in named.fact()
    by_wwid = prove_safe(guest.executor, ScratchDevice(name="disk", wwid=wwid))
    assert by_wwid.device == kernel and by_wwid.declared == f"wwid:{wwid}"
    bare = prove_safe(guest.executor, ScratchDevice(name="disk", wwid="0x" + wwid.removeprefix("naa.")))
    assert bare.device == kernel

    with caplog.at_level(logging.WARNING, logger="fabqual.steps"):
        plain: SafeScratch = prove_safe(guest.executor, ScratchDevice(name="disk", path=kernel))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("may change between boots" in w and by_id[0] in w for w in warnings), warnings
    assert f"declare it as {by_id[0]}" in plain.fact()


def test_missing_and_unknown_devices_are_one_line_lab_errors(guest: Guest) -> None:
    """A path that is not there, and a serial no disk reports, are lab errors in one line naming the device."""
    with pytest.raises(LabError, match=r"^tgt: scratch device gone \(/dev/disk/by-id/none\) is not a block device"):
        prove_safe(guest.executor, ScratchDevice(name="gone", path="/dev/disk/by-id/none"))
    with pytest.raises(LabError, match=r"^tgt: scratch device ghost: no disk reports serial 'NOPE-123'") as caught:
        prove_safe(guest.executor, ScratchDevice(name="ghost", serial="NOPE-123"))
    assert "\n" not in str(caught.value)


def test_loop_device_is_created_bound_then_found_bound(guest: Guest) -> None:
    """create: loop binds a free loop node (an unbound node is not 'already there'); a second bring-up finds
    it bound, checks it and does not bind it again; teardown detaches it."""
    free = guest.sh("losetup -f").strip()
    device = ScratchDevice(name="loopy", path=free, create="loop", size_mb=SIZE_MB)
    first = ensure_scratch(guest.executor, guest.journal, device)
    assert first.created and first.device == free
    assert guest.sh(f"cat /sys/class/block/{free.removeprefix('/dev/')}/loop/backing_file").strip()
    second = ensure_scratch(guest.executor, Journal(), device)
    assert not second.created and second.device == free
    guest.journal.undo_all()
    assert not guest.executor.run(
        f"test -e /sys/class/block/{free.removeprefix('/dev/')}/loop/backing_file", check=False
    ).ok
