"""The discovery log as a host reads it: generation counter and records, plain or through a persistent controller.

``nvme discover -o json`` (nvme-cli 2.x) prints ``genctr`` beside the
records; 1.x prints ``Discovery Log Number of Records N, Generation counter G``
in its text log. Both are read here (fixtures/outputs/nvme-cli/).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

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


@dataclass(frozen=True)
class DiscoveryLog:
    genctr: int
    records: tuple[DiscoveryRecord, ...]

    def subsystems(self) -> set[str]:
        """NQNs of the NVMe subsystems the log offers (not discovery entries or referrals)."""
        return {r.subnqn for r in self.records if r.subtype == "nvme subsystem"}

    def referrals(self) -> list[DiscoveryRecord]:
        """Entries pointing at another discovery controller: subtype "discovery subsystem", not this one."""
        return [r for r in self.records if r.subtype in ("discovery subsystem", "referral")]


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
