"""What the host's kernel shows of one NVMe-oF controller and its paths: state, ANA state, per-path I/O, I/O policy.

Read from sysfs, not from nvme-cli (whose JSON changed between releases):
``/sys/class/nvme/nvmeX/state``, the path devices ``nvmeScXnN`` under the
controller (``/sys/block/nvmeScXnN/ana_state`` and ``stat``) and the
subsystem's ``iopolicy``. :func:`parse_block_stat` is pure and tested on a
captured ``stat``; the rest reads one node.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from fabqual.drivers.journal import write
from fabqual.errors import DriverError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name

# Every I/O policy some kernel knows (6.1: numa, round-robin; 6.11+ also queue-depth).
IO_POLICIES = ("numa", "round-robin", "queue-depth")
_PATH_DEVICE = re.compile(r"^nvme\d+c\d+n\d+$")


@dataclass(frozen=True)
class BlockStat:
    """The completed reads and writes of a block device (``/sys/block/X/stat`` fields 1 and 5)."""

    reads: int
    writes: int


def parse_block_stat(text: str) -> BlockStat:
    """``/sys/block/X/stat`` (11, 15 or 17 numbers, Documentation/block/stat.rst) → completed reads and writes."""
    fields = text.split()
    if len(fields) < 11 or not all(f.isdigit() for f in fields):
        raise ParseError("block stat", f"expected at least 11 numbers, got {text.strip()!r}", text)
    return BlockStat(reads=int(fields[0]), writes=int(fields[4]))


def controller_state(executor: Executor, controller: str) -> str | None:
    """``live``, ``connecting``, ``resetting``, ``deleting``...; None once the controller is gone."""
    name = plain_name(executor.node, "nvme controller", controller)
    out = executor.run(f"cat /sys/class/nvme/{name}/state 2>/dev/null; true", timeout=30).stdout.strip()
    return out or None


def path_device(executor: Executor, controller: str, nsid: int = 1) -> str:
    """The controller's path device of namespace ``nsid`` (``nvme1c2n1``): what multipath routes through."""
    name = plain_name(executor.node, "nvme controller", controller)
    listing = executor.run(f"ls /sys/class/nvme/{name}/ 2>/dev/null; true", timeout=30).stdout.split()
    for entry in listing:
        if _PATH_DEVICE.match(entry) and entry.endswith(f"n{nsid}"):
            return entry
    raise DriverError(
        f"{executor.node}: controller {name} has no path device of namespace {nsid} (entries: {' '.join(listing)});"
        " is native NVMe multipath off (nvme_core multipath=N)?"
    )


def ana_states(executor: Executor, devices: list[str]) -> dict[str, str]:
    """Each path device's ANA state as the host has it."""
    paths = " ".join(
        shlex.quote(f"/sys/block/{plain_name(executor.node, 'path device', d)}/ana_state") for d in devices
    )
    out = executor.run(f"grep -H . {paths} 2>/dev/null; true", timeout=30).stdout
    return {line.split("/")[3]: line.rpartition(":")[2].strip() for line in out.splitlines() if line.count("/") >= 4}


def path_stats(executor: Executor, devices: list[str]) -> dict[str, BlockStat]:
    """Each path device's completed reads and writes now."""
    stats: dict[str, BlockStat] = {}
    for device in devices:
        name = plain_name(executor.node, "path device", device)
        stats[device] = parse_block_stat(executor.run(f"cat /sys/block/{name}/stat", timeout=30).stdout)
    return stats


def subsystem_of(executor: Executor, controller: str) -> str:
    """The ``nvme-subsysN`` a controller belongs to."""
    name = plain_name(executor.node, "nvme controller", controller)
    out = executor.run(f"ls -d /sys/class/nvme-subsystem/*/{name} 2>/dev/null; true", timeout=30).stdout.split()
    if not out:
        raise DriverError(f"{executor.node}: no /sys/class/nvme-subsystem/*/{name}: controller {name} has no subsystem")
    return out[0].split("/")[-2]


def accepted_io_policies(executor: Executor, subsystem: str) -> tuple[list[str], dict[str, str]]:
    """The I/O policies the host's kernel takes for ``subsystem``, each written and read back; the others
    with the kernel's answer. The policy found is written back at the end."""
    name = plain_name(executor.node, "nvme subsystem", subsystem)
    attribute = f"/sys/class/nvme-subsystem/{name}/iopolicy"
    original = executor.run(f"cat {attribute}", timeout=30).stdout.strip()
    accepted: list[str] = []
    refused: dict[str, str] = {}
    for policy in IO_POLICIES:
        result = executor.run(f"echo {shlex.quote(policy)} > {attribute}", timeout=30, check=False)
        now = executor.run(f"cat {attribute}", timeout=30).stdout.strip()
        if result.ok and now == policy:
            accepted.append(policy)
        else:
            refused[policy] = (result.stderr.strip() or f"reads back {now!r}").rsplit(": ", 1)[-1]
    executor.run(f"echo {shlex.quote(original)} > {attribute}", timeout=30)
    log_step(executor.node, f"{name}: I/O policies accepted {', '.join(accepted)}; refused {', '.join(refused) or '-'}")
    return accepted, refused


def set_io_policy(executor: Executor, subsystem: str, policy: str) -> None:
    name = plain_name(executor.node, "nvme subsystem", subsystem)
    write(executor, f"/sys/class/nvme-subsystem/{name}/iopolicy", policy)


def wait_state(
    executor: Executor, controller: str, done: Callable[[str | None], bool], timeout: float, poll: float = 0.2
) -> float:
    """The ``time.monotonic()`` at which ``done(state)`` was first seen for the controller's state (None:
    gone); DriverError after ``timeout`` seconds."""
    start = time.monotonic()
    while True:
        state = controller_state(executor, controller)
        if done(state):
            return time.monotonic()
        if time.monotonic() - start > timeout:
            raise DriverError(f"{executor.node}: controller {controller} still {state} after {timeout:.0f} s")
        time.sleep(poll)
