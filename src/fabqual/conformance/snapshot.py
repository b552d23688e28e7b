"""What NVMe-oF state the two nodes hold: the host's controllers, the target's nvmet configfs objects.

Taken before and after a step a case judges (a refused connect must leave
nothing on either node) and before and after a whole case (the lab self-test:
a case leaves the nodes as it found them). The listing is read in one round
trip per node and compared as text lines, so a difference names the object.
"""

from __future__ import annotations

from dataclasses import dataclass

from fabqual.drivers.nvmet import ROOT
from fabqual.executors.base import Executor

# Host: each controller with its subsystem NQN and state. Target: subsystems, their
# allowed hosts and namespaces, hosts, ports with their addresses, subsystems and referrals.
HOST_LISTING = (
    'for c in /sys/class/nvme/nvme*; do [ -e "$c/subsysnqn" ] || continue;'
    ' echo "controller ${c##*/} $(cat $c/subsysnqn) $(cat $c/state 2>/dev/null)"; done; true'
)
TARGET_LISTING = (
    f"cd {ROOT} 2>/dev/null || exit 0;"
    ' for s in subsystems/*; do [ -d "$s" ] && echo "subsystem ${s#*/}";'
    ' for h in $s/allowed_hosts/*; do [ -e "$h" ] && echo "allowed ${h##*/} of ${s#*/}"; done;'
    ' for n in $s/namespaces/*; do [ -d "$n" ] && echo "namespace ${n##*/} of ${s#*/}"; done; done;'
    ' for h in hosts/*; do [ -d "$h" ] && echo "host ${h#*/}"; done;'
    ' for p in ports/*; do [ -d "$p" ] || continue;'
    ' echo "port ${p#*/} $(cat $p/addr_trtype) $(cat $p/addr_traddr) $(cat $p/addr_trsvcid)";'
    ' for l in $p/subsystems/*; do [ -e "$l" ] && echo "export ${l##*/} on ${p#*/}"; done;'
    ' for r in $p/referrals/*; do [ -d "$r" ] && echo "referral ${r##*/} on ${p#*/}"; done; done; true'
)


@dataclass(frozen=True)
class NvmeState:
    """The host's controllers and the target's nvmet objects, one line each, sorted."""

    host: tuple[str, ...]
    target: tuple[str, ...]

    def difference(self, later: NvmeState) -> str:
        """What ``later`` has that this state had not (+) and lost (-), per node; '' when equal."""
        changes = []
        for node, before, after in (("host", self.host, later.host), ("target", self.target, later.target)):
            changes += [f"{node}: + {line}" for line in sorted(set(after) - set(before))]
            changes += [f"{node}: - {line}" for line in sorted(set(before) - set(after))]
        return "; ".join(changes)


def nvme_state(host: Executor, target: Executor) -> NvmeState:
    """The two nodes' NVMe-oF state now (a node that is both reads the same guest twice)."""
    return NvmeState(
        host=_lines(host.run(HOST_LISTING, timeout=60).stdout),
        target=_lines(target.run(TARGET_LISTING, timeout=60).stdout),
    )


def _lines(text: str) -> tuple[str, ...]:
    return tuple(sorted(" ".join(line.split()) for line in text.splitlines() if line.strip()))
