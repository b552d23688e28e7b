"""NVMe reservations through nvme-cli: whether a controller offers them, and the commands a case sends.

A controller offers reservations when bit 5 of ONCS (Optional NVM Command
Support) in its Identify Controller data is set; ``nvme id-ctrl -o json``
prints ONCS as a number (:func:`parse_oncs`, tested on the lab's kernel nvmet:
ONCS 0xc, bit 5 clear). Registrations and reservations belong to a host (its
host ID), so a case sends each command through the per-controller namespace
character device (``/dev/ng<controller>n<head>``) of the host it acts for.
"""

from __future__ import annotations

import shlex

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import _loads
from fabqual.errors import DriverError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name

ONCS_RESERVATIONS = 1 << 5
WRITE_EXCLUSIVE = 1  # reservation type 1


def parse_oncs(text: str) -> int:
    """``nvme id-ctrl -o json`` → ONCS."""
    data = _loads("nvme id-ctrl", text)
    oncs = data.get("oncs") if isinstance(data, dict) else None
    if isinstance(oncs, bool) or not isinstance(oncs, int):
        raise ParseError("nvme id-ctrl", f"no integer 'oncs' (got {oncs!r})", text)
    return oncs


def reservations_missing(host: Executor, controller: str) -> str:
    """Why ``controller`` takes no reservation commands (ONCS bit 5 clear), or ''."""
    name = plain_name(host.node, "nvme controller", controller)
    oncs = parse_oncs(host.run(f"nvme id-ctrl /dev/{name} -o json", timeout=60).stdout)
    if oncs & ONCS_RESERVATIONS:
        return ""
    return f"{host.node}: {name} does not offer reservations (nvme id-ctrl: ONCS={oncs:#x}, bit 5 clear)"


class Registrant:
    """One host's view of a namespace (its controller's namespace char device) and its registration key."""

    def __init__(self, host: Executor, journal: Journal, controller: str, nsid: int, key: int) -> None:
        name = plain_name(host.node, "nvme controller", controller)
        listing = host.run(f"ls -d /dev/ng{name.removeprefix('nvme')}n* 2>/dev/null; true", timeout=30).stdout.split()
        if not listing:
            raise DriverError(f"{host.node}: {name} has no namespace character device /dev/ng{name[4:]}n*")
        self.host, self.journal, self.device, self.nsid, self.key = host, journal, listing[0], nsid, key

    def nvme(self, verb: str, *args: str, check: bool = True) -> tuple[bool, str]:
        """Run one nvme-cli command on this host's device: (succeeded, what it said)."""
        command = shlex.join(["nvme", verb, self.device, "-n", str(self.nsid), *args])
        log_step(self.host.node, command)
        result = self.host.run(command, timeout=60, check=False)
        output = (result.stdout + result.stderr).strip()
        if check and not result.ok:
            raise DriverError(f"{self.host.node}: `{command}` failed: {output}")
        return result.ok, output

    def register(self) -> None:
        self.nvme("resv-register", f"--nrkey={self.key}", "--rrega=0")
        undo = shlex.join(
            ["nvme", "resv-register", self.device, "-n", str(self.nsid), f"--crkey={self.key}", "--rrega=1"]
        )
        self.journal.record_command(self.host, f"reservation key {self.key:#x} on {self.device}", f"{undo} || true")

    def acquire(self) -> None:
        self.nvme("resv-acquire", f"--crkey={self.key}", f"--rtype={WRITE_EXCLUSIVE}", "--racqa=0")

    def preempt(self, other: Registrant) -> None:
        self.nvme(
            "resv-acquire", f"--crkey={self.key}", f"--prkey={other.key}", f"--rtype={WRITE_EXCLUSIVE}", "--racqa=1"
        )

    def release(self) -> None:
        self.nvme("resv-release", f"--crkey={self.key}", f"--rtype={WRITE_EXCLUSIVE}", "--rrela=0")

    def write_one_block(self, block_bytes: int) -> tuple[bool, str]:
        """Write block 0 with zeros (scratch namespaces only); (accepted, what nvme-cli said)."""
        size = f"--data-size={block_bytes}"
        return self.nvme("write", "--start-block=0", "--block-count=0", size, "--data=/dev/zero", check=False)
