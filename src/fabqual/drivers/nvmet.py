"""Kernel NVMe-oF target (nvmet) through configfs: subsystem, hosts, namespaces, ports.

Everything is created under ``/sys/kernel/config/nvmet`` and journaled, so
teardown removes exactly that, in reverse (port link, port, namespace,
subsystem, host). Namespaces are only ever made from devices the topology
declares scratch: the caller passes the declared paths and anything else is
refused before the kernel sees it.

One thing is removed that this run did not create: a subsystem with the
link's own NQN left behind by an interrupted earlier run (blktests does the
same). Keeping it would make ``mkdir`` fail and the link unusable until
someone cleaned configfs by hand; the NQN is fabqual's, so nothing else owns
it. The removal is a logged step ("remove stale nvmet subsystem ...") and
fails loudly if a host still holds the subsystem.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fabqual.drivers.journal import Journal, exists, modprobe, sh, write
from fabqual.errors import DriverError
from fabqual.executors.base import Executor, log_step

ROOT = "/sys/kernel/config/nvmet"

# Per transport: nvmet module, address family written to the port.
TRANSPORTS: dict[str, tuple[str, str]] = {
    "rdma": ("nvmet-rdma", "ipv4"),
    "tcp": ("nvmet-tcp", "ipv4"),
    "fc": ("nvmet-fc", "fc"),
    "loop": ("nvme-loop", ""),
}


@dataclass(frozen=True)
class PortAddress:
    """Where a port listens: trtype plus traddr (and trsvcid for IP transports)."""

    trtype: str
    traddr: str
    trsvcid: str = ""

    @property
    def adrfam(self) -> str:
        return TRANSPORTS[self.trtype][1]


class NvmetTarget:
    """One node's kernel nvmet, changed only through journaled steps."""

    def __init__(self, executor: Executor, journal: Journal, *, scratch_paths: tuple[str, ...]) -> None:
        self.executor = executor
        self.journal = journal
        self.scratch_paths = scratch_paths

    def prepare(self, trtype: str) -> None:
        if trtype not in TRANSPORTS:
            raise DriverError(f"nvmet transport {trtype!r} is not one of {', '.join(TRANSPORTS)}")
        modprobe(self.executor, "nvmet", TRANSPORTS[trtype][0])
        if not exists(self.executor, ROOT):
            self.executor.run("mount -t configfs none /sys/kernel/config 2>/dev/null || true", timeout=30)
        if not exists(self.executor, ROOT):
            raise DriverError(f"{self.executor.node}: {ROOT} is missing after loading nvmet; is configfs mounted?")

    def remove_stale(self, nqn: str) -> None:
        """Remove a subsystem with our NQN left by an interrupted run (blktests does the same)."""
        sub = f"{ROOT}/subsystems/{nqn}"
        if not exists(self.executor, sub):
            return
        log_step(self.executor.node, f"remove stale nvmet subsystem {nqn} left by an earlier run")
        q = shlex.quote
        self.executor.run(
            f'for l in {ROOT}/ports/*/subsystems/{q(nqn)}; do [ -L "$l" ] && rm -f "$l"; done;'
            f' for p in {ROOT}/ports/*; do [ -d "$p" ] && [ -z "$(ls -A $p/subsystems)" ] && rmdir "$p"; done;'
            f' for n in {q(sub)}/namespaces/*; do [ -d "$n" ] && echo 0 > "$n/enable" && rmdir "$n"; done;'
            f" rm -f {q(sub)}/allowed_hosts/*; rmdir {q(sub)}",
            timeout=60,
            check=False,
        )
        if exists(self.executor, sub):
            raise DriverError(
                f"{self.executor.node}: stale nvmet subsystem {sub} could not be removed; is a host still connected?"
            )

    def create_subsystem(self, nqn: str, *, allow_any_host: bool, allowed_hosts: tuple[str, ...] = ()) -> None:
        sub = f"{ROOT}/subsystems/{nqn}"
        log_step(self.executor.node, f"create nvmet subsystem {nqn}")
        with self.journal.ahead(self.executor, f"nvmet subsystem {nqn}", f"rmdir {shlex.quote(sub)}"):
            sh(self.executor, f"mkdir {shlex.quote(sub)}")
        write(self.executor, f"{sub}/attr_allow_any_host", "1" if allow_any_host else "0")
        for hostnqn in allowed_hosts:
            host = f"{ROOT}/hosts/{hostnqn}"
            if not exists(self.executor, host):
                sh(self.executor, f"mkdir {shlex.quote(host)}")
                self.journal.record_command(self.executor, f"nvmet host {hostnqn}", f"rmdir {shlex.quote(host)}")
            link = f"{sub}/allowed_hosts/{hostnqn}"
            sh(self.executor, f"ln -s {shlex.quote(host)} {shlex.quote(link)}")
            self.journal.record_command(self.executor, f"allowed host {hostnqn} of {nqn}", f"rm {shlex.quote(link)}")

    def add_namespace(self, nqn: str, nsid: int, device_path: str) -> None:
        """Export ``device_path`` as namespace ``nsid``; refused unless it is a declared scratch device."""
        if device_path not in self.scratch_paths:
            declared = ", ".join(self.scratch_paths) or "none"
            raise DriverError(
                f"{self.executor.node}: refusing to export {device_path}: it is not a scratch device of this node"
                f" (declared: {declared}); add it under scratch_devices in the topology if its data may be destroyed"
            )
        ns = f"{ROOT}/subsystems/{nqn}/namespaces/{nsid}"
        log_step(self.executor.node, f"export {device_path} as namespace {nsid} of {nqn}")
        with self.journal.ahead(self.executor, f"namespace {nsid} of {nqn}", f"rmdir {shlex.quote(ns)}"):
            sh(self.executor, f"mkdir {shlex.quote(ns)}")
        write(self.executor, f"{ns}/device_path", device_path)
        write(self.executor, f"{ns}/enable", "1")
        self.journal.record_command(
            self.executor, f"enabled namespace {nsid} of {nqn}", f"echo 0 > {shlex.quote(ns)}/enable"
        )

    def create_port(self, address: PortAddress) -> str:
        """A new port with the lowest free id; returns the id."""
        listing = self.executor.run(f"ls {ROOT}/ports", timeout=30).stdout.split()
        used = {int(p) for p in listing if p.isdigit()}
        port_id = str(next(i for i in range(1, 65536) if i not in used))
        port = f"{ROOT}/ports/{port_id}"
        log_step(self.executor.node, f"create nvmet port {port_id} {address.trtype} {address.traddr} {address.trsvcid}")
        # Journaled before the mkdir: a port has only a number, so a run killed between the two
        # would leave a port nobody could tell from another user's.
        with self.journal.ahead(self.executor, f"nvmet port {port_id}", f"rmdir {shlex.quote(port)}"):
            sh(self.executor, f"mkdir {shlex.quote(port)}")
        write(self.executor, f"{port}/addr_trtype", address.trtype)
        if address.adrfam:
            write(self.executor, f"{port}/addr_adrfam", address.adrfam)
        write(self.executor, f"{port}/addr_traddr", address.traddr)
        if address.trsvcid:
            write(self.executor, f"{port}/addr_trsvcid", address.trsvcid)
        return port_id

    def link_port(self, port_id: str, nqn: str) -> None:
        """Expose the subsystem on the port; the kernel starts listening here."""
        self.relink_port(port_id, nqn)
        # -f: a path a fault test took away (unlink_port) may still be gone at teardown.
        link = shlex.quote(self._port_link(port_id, nqn))
        self.journal.record_command(self.executor, f"link of {nqn} to port {port_id}", f"rm -f {link}")

    def unlink_port(self, port_id: str, nqn: str) -> None:
        """Stop exposing the subsystem on the port: the kernel drops that port's controllers (one path gone)."""
        log_step(self.executor.node, f"stop exposing {nqn} on nvmet port {port_id}")
        sh(self.executor, f"rm {shlex.quote(self._port_link(port_id, nqn))}")

    def relink_port(self, port_id: str, nqn: str) -> None:
        log_step(self.executor.node, f"expose {nqn} on nvmet port {port_id}")
        target = shlex.quote(f"{ROOT}/subsystems/{nqn}")
        sh(self.executor, f"ln -s {target} {shlex.quote(self._port_link(port_id, nqn))}")

    @staticmethod
    def _port_link(port_id: str, nqn: str) -> str:
        return f"{ROOT}/ports/{port_id}/subsystems/{nqn}"
