"""nvme-fcloop: a software FC fabric inside one kernel (the emulated lab's FC-NVMe).

A *local port* is the host side (what nvme-fc connects from), a *target port*
is what nvmet-fc listens on, and a *remote port* is the host's view of the
target port: it must carry the same WWNs as the target port and ``roles=0x60``
(FCP target + NVMe target), else ``nvme connect -t fc`` fails with "Invalid
request descriptor". The WWNs are blktests' well-known ones.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fabqual.drivers.journal import Journal, exists, modprobe, write
from fabqual.errors import DriverError
from fabqual.executors.base import Executor, log_step

CTL = "/sys/class/fcloop/ctl"
REMOTE_ROLES = "0x60"  # FC4 roles: NVMe target (0x40) | FCP target (0x20)


@dataclass(frozen=True)
class FcAddress:
    """An FC port by its node and port names, as sysfs prints them (0x + 16 hex digits)."""

    wwnn: str
    wwpn: str

    @property
    def nvme_traddr(self) -> str:
        """nvme-cli / nvmet form: nn-0x…:pn-0x…"""
        return f"nn-{self.wwnn}:pn-{self.wwpn}"

    @property
    def fcloop_args(self) -> str:
        return f"wwnn={self.wwnn},wwpn={self.wwpn}"


HOST_PORT = FcAddress("0x10001100aa000001", "0x20001100aa000001")
TARGET_PORT = FcAddress("0x10001100ab000001", "0x20001100ab000001")


class FcloopFabric:
    """The three fcloop ports of one link, created and deleted through ``/sys/class/fcloop/ctl``."""

    def __init__(
        self, executor: Executor, journal: Journal, host: FcAddress = HOST_PORT, target: FcAddress = TARGET_PORT
    ) -> None:
        self.executor = executor
        self.journal = journal
        self.host = host
        self.target = target
        self._remote_entry: object = None

    def up(self) -> None:
        modprobe(self.executor, "nvme-fc", "nvmet-fc", "nvme-fcloop")
        if not exists(self.executor, CTL):
            raise DriverError(f"{self.executor.node}: {CTL} is missing although nvme-fcloop loaded")
        for left in fcloop_leftovers(self.executor, self.host, self.target):
            log_step(self.executor.node, f"removed stale fcloop {left} (fabqual's WWN) left by an earlier run")
        self._add("add_local_port", "del_local_port", self.host.fcloop_args, f"fcloop local port {self.host.wwpn}")
        self._add(
            "add_target_port", "del_target_port", self.target.fcloop_args, f"fcloop target port {self.target.wwpn}"
        )
        self.add_remote_port()

    def add_remote_port(self) -> None:
        """The host's view of the target port (also used to restore the fabric after a fault)."""
        args = f"{self.target.fcloop_args},lpwwnn={self.host.wwnn},lpwwpn={self.host.wwpn},roles={REMOTE_ROLES}"
        self._remote_entry = self._add(
            "add_remote_port", "del_remote_port", args, f"fcloop remote port {self.target.wwpn}"
        )

    def delete_remote_port(self) -> None:
        """Take the fabric away: the host loses its path to the target (fault injection)."""
        write(self.executor, f"{CTL}/del_remote_port", self.target.fcloop_args)
        entry = self._remote_entry
        if entry is not None:
            entry.done = True  # type: ignore[attr-defined]
            self._remote_entry = None

    def _add(self, add: str, delete: str, args: str, what: str) -> object:
        write(self.executor, f"{CTL}/{add}", args)
        undo_args = args.split(",lpwwnn=")[0]  # deletion takes only the port's own names
        return self.journal.record(
            self.executor.node,
            what,
            lambda: write(self.executor, f"{CTL}/{delete}", undo_args),
            replay=f"echo {undo_args} > {CTL}/{delete}",
            executor=self.executor,
        )


def fcloop_leftovers(executor: Executor, host: FcAddress = HOST_PORT, target: FcAddress = TARGET_PORT) -> list[str]:
    """fcloop ports of these WWNs that still exist, found by deleting them (fcloop has no listing).

    A deletion that succeeds means the port was left behind; it is gone afterwards.
    The WWNs are fabqual's own (its mark): no other user's port is touched.
    """
    if not exists(executor, CTL):
        return []
    found = []
    for kind, address in (("remote", target), ("target", target), ("local", host)):
        command = f"echo {shlex.quote(address.fcloop_args)} > {shlex.quote(f'{CTL}/del_{kind}_port')}"
        result = executor.run(command, timeout=30, check=False)
        if result.ok:
            found.append(f"{kind} port {address.wwpn}")
    return found
