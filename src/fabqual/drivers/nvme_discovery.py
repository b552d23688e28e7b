"""The discovery log as a host reads it: generation counter and records, plain or through a persistent controller.

``nvme discover -o json`` (nvme-cli 2.x) prints ``genctr`` beside the
records; 1.x prints ``Discovery Log Number of Records N, Generation counter G``
in its text log. Both are read here (fixtures/outputs/nvme-cli/).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import (
    ConnectSpec,
    DiscoveryRecord,
    NvmeHost,
    _loads,
    parse_discovery,
    parse_discovery_text,
)
from fabqual.errors import DriverError, ParseError
from fabqual.executors.base import log_step

DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
REFERRAL_SUBTYPES = ("discovery subsystem referral", "discovery subsystem")


@dataclass(frozen=True)
class DiscoveryLog:
    genctr: int
    records: tuple[DiscoveryRecord, ...]

    def subsystems(self) -> set[str]:
        """NQNs of the NVMe subsystems the log offers (not discovery entries or referrals)."""
        return {r.subnqn for r in self.records if r.subtype == "nvme subsystem"}

    def referrals(self) -> list[DiscoveryRecord]:
        """Entries pointing at another discovery controller, not this one.

        nvme-cli 2.x (libnvme) prints their subtype as "discovery subsystem
        referral", 1.x as "discovery subsystem"; the controller read from is
        "current discovery subsystem" in both.
        """
        return [r for r in self.records if r.subtype in REFERRAL_SUBTYPES]


def parse_discovery_log(text: str) -> DiscoveryLog:
    """``nvme discover`` output (2.x JSON or 1.x text) → generation counter and records."""
    if text.lstrip().startswith(("{", "[")) or "Discovery Log Number of Records" not in text:
        data = _loads("nvme discover", text)
        genctr = data.get("genctr") if isinstance(data, dict) else None
        if isinstance(genctr, bool) or not isinstance(genctr, int):
            raise ParseError("nvme discover", f"no integer 'genctr' (got {genctr!r})", text)
        return DiscoveryLog(genctr, tuple(parse_discovery(text)))
    found = re.search(r"Generation counter (\d+)", text)
    if found is None:
        raise ParseError("nvme discover", "no 'Generation counter' in the log header", text)
    return DiscoveryLog(int(found[1]), tuple(parse_discovery_text(text)))


def read_discovery_log(nvme: NvmeHost, spec: ConnectSpec, *, device: str = "") -> DiscoveryLog:
    """The discovery log at ``spec``'s address, or through the persistent discovery controller ``device``."""
    where = ["-d", device] if device else []
    command = shlex.join(["nvme", "discover", *spec.args(), *where, "-q", nvme.hostnqn(), "-o", "json"])
    log_step(nvme.executor.node, f"read the discovery log at {spec.traddr} {spec.trsvcid} {device}".rstrip())
    result = nvme.executor.run(command, timeout=120, check=False)
    if not result.ok:
        raise DriverError(f"{nvme.executor.node}: `{command}` failed: {(result.stderr or result.stdout).strip()}")
    return parse_discovery_log(result.stdout)


def discovery_controllers(nvme: NvmeHost) -> list[str]:
    """The host's discovery controllers (``/sys/class/nvme`` entries of the discovery NQN)."""
    listing = nvme.executor.run(
        f"grep -lx {DISCOVERY_NQN} /sys/class/nvme/nvme*/subsysnqn 2>/dev/null; true", timeout=30
    ).stdout
    return sorted(line.split("/")[-2] for line in listing.splitlines() if line.strip())


def connect_persistent(nvme: NvmeHost, journal: Journal, spec: ConnectSpec, *, connect_all: bool = False) -> str:
    """A persistent discovery controller at ``spec``'s address (``nvme discover -p``, or ``nvme connect-all
    --persistent`` which also connects what the log offers); returns its name (nvme3).

    Its disconnect is journaled before the command runs: every discovery controller to that address that
    was not there before is removed, so a run killed in between leaves nothing a sweep cannot undo.
    """
    before = discovery_controllers(nvme)
    q = shlex.quote
    undo = (
        "for c in /sys/class/nvme/nvme*; do n=${c##*/};"
        f' case " {" ".join(before)} " in *" $n "*) continue;; esac;'
        f' [ "$(cat $c/subsysnqn 2>/dev/null)" = {DISCOVERY_NQN} ] || continue;'
        f" grep -qF {q('traddr=' + spec.traddr)} $c/address && nvme disconnect -d $n; done; true"
    )
    verb = ["connect-all", "--persistent"] if connect_all else ["discover", "--persistent"]
    command = shlex.join(["nvme", *verb, *spec.args(), "-q", nvme.hostnqn()])
    with journal.ahead(
        nvme.executor, f"persistent discovery controller at {spec.traddr} {spec.trsvcid}".rstrip(), undo
    ):
        log_step(nvme.executor.node, f"persistent discovery controller: {command}")
        result = nvme.executor.run(command, timeout=180, check=False)
        new = sorted(set(discovery_controllers(nvme)) - set(before))
    if not result.ok and not new:  # connect-all also fails when one entry was connected already: judged by what is new
        raise DriverError(f"{nvme.executor.node}: `{command}` failed: {(result.stderr or result.stdout).strip()}")
    if len(new) != 1:
        raise DriverError(
            f"{nvme.executor.node}: `{command}` left {len(new)} new discovery controllers ({', '.join(new) or 'none'});"
            " expected one (is a persistent one to that address left from an earlier run?)"
        )
    return new[0]
