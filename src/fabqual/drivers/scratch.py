"""Scratch block devices: created when the topology asks, and proven safe on the node before the first write.

Every device a link exports is first resolved on its node (a path, best a
stable /dev/disk/by-id or by-path name, or a WWID/serial/EUI looked up under
/sys/class/block) to the kernel device it is today, then probed in one round
trip (:mod:`fabqual.drivers.blockdev`). A device that is mounted, held, used as
swap, under / or /boot, or that carries a partition table or any file
system/RAID/LVM signature is refused with one line; ``wipe_signatures: true``
on the device wipes the signatures instead (logged), never a busy device.

Devices fabqual creates (``create: null_blk`` or ``loop``) are made empty and
then checked like any other: a device of the same name that already exists
may hold someone else's data. null_blk devices are made through configfs with
``memory_backed=1`` so written data is kept and fio's verify pass reads it
back; the configfs directory is named after the declared path, which the
kernel uses as the disk name (/dev/nullb1 for ``nullb1``).
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass

from fabqual.drivers.blockdev import (
    LIST_SCRIPT,
    PROBE_SCRIPT,
    Hazards,
    Identity,
    Probe,
    hazards,
    matches,
    parse_identities,
    parse_probe,
)
from fabqual.drivers.journal import Journal, exists, modprobe, write
from fabqual.errors import DriverError, LabError, ParseError, UnsafeDeviceError
from fabqual.executors.base import Executor, log_step
from fabqual.topology.model import ScratchDevice

NULLB = "/sys/kernel/config/nullb"
STABLE_PREFIXES = ("/dev/disk/by-id/", "/dev/disk/by-path/")

log = logging.getLogger("fabqual.steps")


@dataclass(frozen=True)
class SafeScratch:
    """A scratch device its node proved safe to write, and what it resolved to."""

    node: str
    name: str  # the scratch device's name in the topology
    declared: str  # path, or wwid:/serial:/eui:
    device: str  # the kernel device it is today, e.g. /dev/nvme0n1
    identity: Identity
    stable_names: tuple[str, ...]  # /dev/disk/by-id, by-path names of it
    created: bool  # made by fabqual in this run
    wiped: tuple[str, ...] = ()  # signatures wiped under wipe_signatures: true

    def fact(self) -> str:
        """One line for the report's inventory: declared name → kernel device, serial/WWID, what was done."""
        text = f"{self.declared} → {self.device} ({self.identity.text()})"
        if self.created:
            text += ", created by fabqual"
        elif _kernel_name(self.declared):
            text += f"; kernel name, may change between boots: {_prefer(self.stable_names)}"
        if self.wiped:
            text += f"; signatures wiped (wipe_signatures: true): {', '.join(self.wiped)}"
        return text


def ensure_scratch(executor: Executor, journal: Journal, device: ScratchDevice) -> SafeScratch:
    """Make sure the declared scratch device exists and is safe to write; refuse it otherwise."""
    created = False
    if device.create != "none" and device.path is not None:
        if _exists(executor, device.create, device.path):
            log_step(executor.node, f"scratch device {device.path} already exists; checking it like a declared one")
        else:
            if device.create == "null_blk":
                _create_null_blk(executor, journal, device.path, device.size_mb)
            else:
                _create_loop(executor, journal, device)
            _wait_block(executor, device.path)
            created = True
    return prove_safe(executor, device, created=created)


def prove_safe(executor: Executor, device: ScratchDevice, *, created: bool = False) -> SafeScratch:
    """Resolve ``device`` on its node and prove nothing on it is in use; wipe signatures only when allowed."""
    path = _locate(executor, device)
    probe = _probe(executor, device, path)
    found = hazards(probe)
    wiped: tuple[str, ...] = ()
    if found.signatures and not found.busy and device.wipe_signatures:
        wiped = probe.wipefs or found.signatures
        log_step(
            executor.node,
            f"wipe signatures of scratch device {device.name} ({device.declared} → {probe.resolved}),"
            f" as its wipe_signatures: true allows: {'; '.join(found.signatures)}",
        )
        result = executor.run(f"wipefs --all -- {shlex.quote(probe.resolved)}", timeout=120, check=False)
        if not result.ok:
            why = (result.stderr or result.stdout).strip().splitlines()
            raise DriverError(
                f"{executor.node}: wipefs --all {probe.resolved} failed: {why[-1] if why else result.exit_status}"
            )
        probe = _probe(executor, device, path)
        found = hazards(probe)
    if not found.safe:
        raise UnsafeDeviceError(_refusal(executor.node, device, probe, found))
    safe = SafeScratch(
        node=executor.node,
        name=device.name,
        declared=device.declared,
        device=probe.resolved,
        identity=probe.identity,
        stable_names=probe.links,
        created=created,
        wiped=wiped,
    )
    if not created and _kernel_name(device.declared):
        log.warning(
            "[%s] scratch device %s is declared by its kernel name %s, which may change between boots; %s",
            executor.node,
            device.name,
            device.declared,
            _prefer(probe.links),
        )
    log_step(executor.node, f"scratch device {device.name} is safe to write: {safe.fact()}")
    return safe


def check_scratch(executor: Executor, device: ScratchDevice) -> tuple[str, str] | None:
    """What :func:`prove_safe` would refuse, as (what is wrong, how to fix it), without changing anything.

    For the doctor: a device whose signatures ``wipe_signatures: true`` would wipe passes; a missing
    one is reported with the lab error's text.
    """
    try:
        probe = _probe(executor, device, _locate(executor, device))
    except LabError as error:
        return str(error).removeprefix(f"{executor.node}: "), "attach it, or fix its name in the topology"
    found = hazards(probe)
    if found.busy or (found.signatures and not device.wipe_signatures):
        return _what(device, probe, found), _fix(probe, found)
    return None


def _locate(executor: Executor, device: ScratchDevice) -> str:
    """The path to probe: the declared one, or /dev/<disk> of the one disk with the declared identity."""
    key, wanted = device.identity
    if key == "path":
        return wanted
    disks = parse_identities(executor.run(f"sh -c {shlex.quote(LIST_SCRIPT)}", timeout=60).stdout)
    found = sorted(name for name, identity in disks.items() if matches(identity, key, wanted))
    if not found:
        raise LabError(
            f"{executor.node}: scratch device {device.name}: no disk reports {key} {wanted!r}"
            f" ({len(disks)} disks looked at under /sys/class/block); check the {key} or name it by path"
        )
    if len(found) > 1:
        raise LabError(
            f"{executor.node}: scratch device {device.name}: {len(found)} disks report {key} {wanted!r}"
            f" ({', '.join(found)}); name it by a /dev/disk/by-id path or its eui/wwid instead"
        )
    return f"/dev/{found[0]}"


def _probe(executor: Executor, device: ScratchDevice, path: str) -> Probe:
    result = executor.run(f"sh -c {shlex.quote(PROBE_SCRIPT)} probe {shlex.quote(path)}", timeout=120, check=False)
    try:
        probe = parse_probe(result.stdout)
    except ParseError as error:
        first = str(error).splitlines()
        raise LabError(
            f"{executor.node}: cannot prove scratch device {device.name} ({device.declared}) safe: {' | '.join(first)}"
        ) from None
    if not probe.exists:
        where = f" (it resolves to {probe.resolved})" if probe.resolved and probe.resolved != path else ""
        raise LabError(
            f"{executor.node}: scratch device {device.name} ({device.declared}) is not a block device{where};"
            " attach it, or set create: null_blk in the topology for an emulated one"
        )
    return probe


def _refusal(node: str, device: ScratchDevice, probe: Probe, found: Hazards) -> str:
    """One line: node, device as declared and resolved, every reason, how to fix it."""
    return f"the rack offers an unsafe scratch device: {node}: {_what(device, probe, found)}; {_fix(probe, found)}"


def _what(device: ScratchDevice, probe: Probe, found: Hazards) -> str:
    return f"{device.name} ({device.declared} → {probe.resolved}): {'; '.join(found.busy + found.signatures)}"


def _fix(probe: Probe, found: Hazards) -> str:
    if found.busy:
        return "free it (unmount, swapoff, remove the holder, let fabqual read it) or declare another scratch device"
    return (
        f"wipe it yourself (wipefs --all {probe.resolved}) if its data may be destroyed,"
        " or set wipe_signatures: true on it in the topology"
    )


def _kernel_name(declared: str) -> bool:
    return declared.startswith("/dev/") and not declared.startswith(STABLE_PREFIXES)


def _prefer(links: tuple[str, ...]) -> str:
    # A WWN or EUI names the medium itself; by-id's other names (scsi-, ata-, nvme-<model>_<serial>) come next.
    by_id = sorted(
        (link for link in links if link.startswith("/dev/disk/by-id/")),
        key=lambda link: ("/wwn-" not in link and "-eui." not in link, link),
    ) or list(links)
    if by_id:
        return f"declare it as {by_id[0]}"
    return "the node has no /dev/disk/by-id name for it; declare it by wwid, serial or eui"


def _exists(executor: Executor, create: str, path: str) -> bool:
    """Whether the device to create is there already (a loop device node exists unbound: ask for its file)."""
    if create == "loop":
        check = f"test -e /sys/class/block/{shlex.quote(path.removeprefix('/dev/'))}/loop/backing_file"
    else:
        check = f"test -b {shlex.quote(path)}"
    return executor.run(check, timeout=30, check=False).ok


def _create_null_blk(executor: Executor, journal: Journal, path: str, size_mb: int) -> None:
    name = path.removeprefix("/dev/")
    if not name.startswith("nullb") or not name[5:].isdigit():
        raise DriverError(f"scratch device {path}: a null_blk path looks like /dev/nullbN")
    # nr_devices=0: no default nullb0 next to the configfs ones.
    loaded = exists(executor, "/sys/module/null_blk")
    if not loaded and not executor.run("modprobe null_blk nr_devices=0", timeout=120, check=False).ok:
        modprobe(executor, "null_blk")  # raises the lab error naming the module
    executor.run("mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config", timeout=30)
    item = f"{NULLB}/{name}"
    log_step(executor.node, f"create null_blk {path} ({size_mb} MB, memory backed)")
    with journal.ahead(executor, f"null_blk {name}", f"rmdir {shlex.quote(item)}"):
        executor.run(f"mkdir {shlex.quote(item)}", timeout=30)
    for attribute, value in (("size", str(size_mb)), ("memory_backed", "1"), ("blocksize", "4096")):
        write(executor, f"{item}/{attribute}", value)
    write(executor, f"{item}/power", "1")
    journal.record_command(executor, f"power of null_blk {name}", f"echo 0 > {shlex.quote(item)}/power")
    try:
        _wait_block(executor, path)
    except DriverError:
        # Older kernels (5.10) name the disk by the lowest free index, not by the configfs item (probed:
        # the item's index). Hold the lower free indexes with small fillers, then power this one on again.
        index = _null_blk_index(executor, item)
        wanted = int(name[5:])
        if index is None or index == wanted:
            raise
        if index < wanted:
            write(executor, f"{item}/power", "0")
            for lower in range(wanted):
                if executor.run(f"test -b /dev/nullb{lower}", timeout=30, check=False).ok:
                    continue
                filler = f"{NULLB}/fabqual-fill{lower}"
                log_step(executor.node, f"hold null_blk index {lower} (this kernel names by index) for {path}")
                with journal.ahead(executor, f"null_blk filler {lower}", f"rmdir {shlex.quote(filler)}"):
                    executor.run(f"mkdir {shlex.quote(filler)}", timeout=30)
                write(executor, f"{filler}/size", "1")
                write(executor, f"{filler}/power", "1")
                journal.record_command(executor, f"power of filler {lower}", f"echo 0 > {shlex.quote(filler)}/power")
            write(executor, f"{item}/power", "1")
            index = _null_blk_index(executor, item)
            if index == wanted:
                _wait_block(executor, path)
                return
        raise DriverError(
            f"{executor.node}: this kernel named null_blk {name} /dev/nullb{index} (by free index, not by name),"
            f" so {path} never appeared: declare null_blk scratch devices in index order from nullb0"
        ) from None


def _null_blk_index(executor: Executor, item: str) -> int | None:
    text = executor.run(f"cat {shlex.quote(item)}/index", timeout=30, check=False).stdout.strip()
    return int(text) if text.isdigit() else None


def _create_loop(executor: Executor, journal: Journal, device: ScratchDevice) -> None:
    assert device.path is not None  # the topology requires a path with create: (load.py)
    image = f"{journal.run_dirs.path(executor)}/{device.name}.img"  # the run's private directory
    log_step(executor.node, f"create loop device {device.path} over {image} ({device.size_mb} MB)")
    executor.run(f"truncate -s {device.size_mb}M {shlex.quote(image)}", timeout=60)
    journal.record_command(executor, f"image {image}", f"rm -f {shlex.quote(image)}")
    executor.run(f"losetup {shlex.quote(device.path)} {shlex.quote(image)}", timeout=60)
    journal.record_command(executor, f"loop device {device.path}", f"losetup -d {shlex.quote(device.path)}")


def _wait_block(executor: Executor, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not executor.run(f"test -b {shlex.quote(path)}", timeout=30, check=False).ok:
        if time.monotonic() > deadline:
            raise DriverError(f"{executor.node}: {path} did not appear {timeout:.0f}s after it was created")
        time.sleep(0.5)
