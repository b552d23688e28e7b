"""One ``nvme connect`` a case judges: whether it was refused, what nvme-cli and the host kernel said, how long it took.

Unlike :meth:`fabqual.drivers.nvme_host.NvmeHost.connect` (which must succeed),
an attempt is expected to fail as often as to succeed: it returns what
happened instead of raising. The host kernel's words come from its log after a
mark the attempt writes to ``/dev/kmsg`` first, so only this attempt's lines are
read. A controller an attempt may leave is journaled before the attempt (its
disconnect is harmless when none came up).
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from dataclasses import dataclass, field

from fabqual.conformance.fabric import NvmeFabric
from fabqual.drivers.journal import modprobe
from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost
from fabqual.errors import LabError
from fabqual.executors.base import log_step
from fabqual.health import kernel_lines_since, mark_kernel_log
from fabqual.topology.grammar import check_nqn

# The host gives up on an unreachable address after this many seconds (nvme-cli waits for the kernel).
ATTEMPT_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class HostIdentity:
    """A host NQN a case connects as, and its host ID.

    A host NQN of fabqual's gets a fixed UUID of its own (uuid5 of the NQN): the
    kernel refuses one host ID under two NQNs. The node's own NQN (``own=True``)
    keeps the node's host ID (nvme-cli reads /etc/nvme/hostid): 6.12 refuses a
    known host NQN with another ID ("found same hostnqn ... but different hostid").
    """

    hostnqn: str
    own: bool = False
    hostid: str = field(default="", init=False)

    def __post_init__(self) -> None:
        problem = check_nqn(self.hostnqn)
        if problem:
            raise LabError(f"host NQN {self.hostnqn!r}: {problem}")
        if not self.own:
            object.__setattr__(self, "hostid", str(uuid.uuid5(uuid.NAMESPACE_URL, self.hostnqn)))

    def args(self) -> list[str]:
        return ["-q", self.hostnqn, *(["-I", self.hostid] if self.hostid else [])]


@dataclass(frozen=True)
class Attempt:
    """What one connect attempt did: refused or not, nvme-cli's output, the host kernel's lines, new controllers."""

    command: str
    refused: bool
    output: str
    kernel_log: str
    controllers: tuple[str, ...]
    seconds: float
    exit_status: int | None = field(default=None)

    def said(self, pattern: str) -> bool:
        """Whether nvme-cli or the host kernel said something matching ``pattern`` (a regular expression)."""
        return re.search(pattern, f"{self.output}\n{self.kernel_log}") is not None

    def describe(self) -> str:
        kernel = " | ".join(self.kernel_log.strip().splitlines()[-4:]) or "(nothing)"
        return (
            f"`{self.command}` exit {self.exit_status}: {self.output.strip() or '(no output)'}; host kernel: {kernel}"
        )


def connect_command(spec: ConnectSpec, identity: HostIdentity, *extra: str) -> list[str]:
    """``nvme connect`` to ``spec`` as ``identity``; no reconnects: a refusal is final."""
    return ["nvme", "connect", *spec.args(), "-n", spec.subsystem_nqn, *identity.args(), "--ctrl-loss-tmo", "0", *extra]


def attempt_connect(fabric: NvmeFabric, spec: ConnectSpec, identity: HostIdentity, *extra: str) -> Attempt:
    """Run one ``nvme connect`` and report what happened (``extra``: e.g. ``--dhchap-secret=...``)."""
    nvme = fabric.nvme
    modprobe(nvme.executor, NvmeHost.HOST_MODULES[spec.trtype])
    before = set(controllers_of(nvme, spec.subsystem_nqn))
    nvme.journal_disconnect(spec.subsystem_nqn)
    mark = mark_kernel_log(nvme.executor, f"conformance attempt {spec.subsystem_nqn}")
    command = shlex.join(connect_command(spec, identity, *extra))
    log_step(nvme.executor.node, f"attempt: {command}")
    start = time.monotonic()
    result = nvme.executor.run(command, timeout=ATTEMPT_TIMEOUT_S, check=False)
    seconds = time.monotonic() - start
    kernel = "\n".join(kernel_lines_since(nvme.executor, mark))
    new = tuple(sorted(set(controllers_of(nvme, spec.subsystem_nqn)) - before))
    output = "\n".join(part for part in (result.stdout.strip(), result.stderr.strip()) if part)
    attempt = Attempt(command, not result.ok, output, kernel, new, seconds, result.exit_status)
    log_step(
        nvme.executor.node, f"{'refused' if attempt.refused else 'connected'} in {seconds:.1f} s: {attempt.describe()}"
    )
    return attempt


def controllers_of(nvme: NvmeHost, nqn: str) -> list[str]:
    """The host's controllers of ``nqn`` as ``/sys/class/nvme`` has them (also those not yet live)."""
    listing = nvme.executor.run(
        f"grep -lx {shlex.quote(nqn)} /sys/class/nvme/nvme*/subsysnqn 2>/dev/null; true", timeout=30
    ).stdout
    return sorted(line.split("/")[-2] for line in listing.splitlines() if line.strip())
