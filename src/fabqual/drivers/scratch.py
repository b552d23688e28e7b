"""Scratch block devices the topology asks fabqual to create (``create: null_blk`` or ``loop``).

null_blk devices are made through configfs with ``memory_backed=1`` so written
data is kept and fio's verify pass reads it back; the configfs directory is
named after the declared path, which the kernel uses as the disk name
(/dev/nullb1 for ``nullb1``). Devices that already exist are used as they are
and left alone.
"""

from __future__ import annotations

import shlex
import time

from fabqual.drivers.journal import Journal, exists, modprobe, write
from fabqual.errors import DriverError
from fabqual.executors.base import Executor, log_step
from fabqual.topology.model import ScratchDevice

NULLB = "/sys/kernel/config/nullb"


def ensure_scratch(executor: Executor, journal: Journal, device: ScratchDevice) -> str:
    """Make sure the declared scratch device exists; returns its path."""
    if executor.run(f"test -b {shlex.quote(device.path)}", timeout=30, check=False).ok:
        if device.create != "none":
            log_step(executor.node, f"scratch device {device.path} already exists; using it as it is")
        return device.path
    if device.create == "null_blk":
        _create_null_blk(executor, journal, device)
    elif device.create == "loop":
        _create_loop(executor, journal, device)
    else:
        raise DriverError(
            f"{executor.node}: scratch device {device.name} ({device.path}) does not exist;"
            " attach it, or set create: null_blk in the topology for an emulated one"
        )
    _wait_block(executor, device.path)
    return device.path


def _create_null_blk(executor: Executor, journal: Journal, device: ScratchDevice) -> None:
    name = device.path.removeprefix("/dev/")
    if not name.startswith("nullb") or "/" in name:
        raise DriverError(f"scratch device {device.name}: a null_blk path looks like /dev/nullbN, not {device.path}")
    # nr_devices=0: no default nullb0 next to the configfs ones.
    loaded = exists(executor, "/sys/module/null_blk")
    if not loaded and not executor.run("modprobe null_blk nr_devices=0", timeout=120, check=False).ok:
        modprobe(executor, "null_blk")  # raises the lab error naming the module
    executor.run("mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config", timeout=30)
    item = f"{NULLB}/{name}"
    log_step(executor.node, f"create null_blk {device.path} ({device.size_mb} MB, memory backed)")
    executor.run(f"mkdir {item}", timeout=30)
    journal.record_command(executor, f"null_blk {name}", f"rmdir {item}")
    for attribute, value in (("size", str(device.size_mb)), ("memory_backed", "1"), ("blocksize", "4096")):
        write(executor, f"{item}/{attribute}", value)
    write(executor, f"{item}/power", "1")
    journal.record_command(executor, f"power of null_blk {name}", f"echo 0 > {item}/power")


def _create_loop(executor: Executor, journal: Journal, device: ScratchDevice) -> None:
    image = f"/var/tmp/fabqual-{device.name}.img"
    log_step(executor.node, f"create loop device {device.path} over {image} ({device.size_mb} MB)")
    executor.run(f"truncate -s {device.size_mb}M {image}", timeout=60)
    journal.record_command(executor, f"image {image}", f"rm -f {image}")
    executor.run(f"losetup {shlex.quote(device.path)} {image}", timeout=60)
    journal.record_command(executor, f"loop device {device.path}", f"losetup -d {shlex.quote(device.path)}")


def _wait_block(executor: Executor, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not executor.run(f"test -b {shlex.quote(path)}", timeout=30, check=False).ok:
        if time.monotonic() > deadline:
            raise DriverError(f"{executor.node}: {path} did not appear {timeout:.0f}s after it was created")
        time.sleep(0.5)
