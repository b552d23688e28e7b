"""Asynchronous event notices of NVMe controllers, as the host's kernel announces them in uevents.

The host kernel turns every AEN a controller sends into a ``change`` uevent
carrying ``NVME_AEN`` (a discovery log change is ``0x70f002``: log page 0x70,
info 0xf0, type notice). ``udevadm monitor --kernel --property`` prints them;
:func:`parse_uevents` reads that output (tested on the lab's systemd 252,
fixtures/outputs/udevadm/). nvme-cli's udev rule
``70-nvmf-autoconnect.rules`` answers the discovery change with ``nvme
connect-all``; :func:`autoconnect_rules` tells from the rule files in udev's
order of precedence whether such a rule is in force on a node.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from fabqual.drivers.background import BackgroundProcess
from fabqual.drivers.journal import Journal
from fabqual.errors import DriverError, ParseError
from fabqual.executors.base import Executor, log_step

DISCOVERY_CHANGE = "0x70f002"
# udev reads rules from these directories; a file name in an earlier one hides the same name in later ones.
RULE_DIRECTORIES = ("/etc/udev/rules.d", "/run/udev/rules.d", "/usr/lib/udev/rules.d", "/lib/udev/rules.d")
# One grep per directory (a shell loop over ~100 rule files took > 30 s on a loaded TCG guest): "dir file count".
RULE_LISTING = (
    "for d in " + " ".join(RULE_DIRECTORIES) + '; do [ -d "$d" ] || continue;'
    ' (cd "$d" && grep -cH -- \'NVME_AEN}=="' + DISCOVERY_CHANGE + "\"' *.rules 2>/dev/null)"
    ' | sed "s|^\\(.*\\):\\([0-9]*\\)$|$d \\1 \\2|"; done; true'
)
_EVENT_HEAD = re.compile(r"^(KERNEL|UDEV)\s*\[[\d.]+\]\s+(\S+)\s+(\S+)\s+\((\S+)\)\s*$")


@dataclass(frozen=True)
class Uevent:
    source: str  # KERNEL or UDEV
    action: str
    devpath: str
    properties: dict[str, str]


def parse_uevents(text: str) -> list[Uevent]:
    """``udevadm monitor --property`` output → events with their properties (the banner is skipped)."""
    events: list[Uevent] = []
    for line in text.splitlines():
        head = _EVENT_HEAD.match(line.strip())
        if head:
            events.append(Uevent(head[1], head[2], head[3], {}))
        elif events and "=" in line and line.strip():
            key, _, value = line.strip().partition("=")
            events[-1].properties.setdefault(key, value)
    for event in events:
        if "ACTION" not in event.properties:
            raise ParseError("udevadm monitor", f"event for {event.devpath} has no ACTION property: truncated?", text)
    return events


def autoconnect_rules(listing: str) -> list[str]:
    """From ``RULE_LISTING`` (``dir name count`` per file): the rule files in force that answer a discovery change."""
    winners: dict[str, tuple[str, int]] = {}
    for line in listing.splitlines():
        words = line.split()
        if len(words) != 3 or not words[2].isdigit():
            raise ParseError("udev rule listing", f"expected 'directory file count', got {line!r}", listing)
        winners.setdefault(words[1], (words[0], int(words[2])))
    return sorted(f"{directory}/{name}" for name, (directory, count) in winners.items() if count)


def autoconnect_missing(host: Executor) -> str:
    """Why the host's udev would not run ``nvme connect-all`` on a discovery log change AEN, or ''."""
    listing = host.run(RULE_LISTING, timeout=60).stdout
    if autoconnect_rules(listing):
        return ""
    hidden = [line.split()[0] + "/" + line.split()[1] for line in listing.splitlines() if "nvmf-autoconnect" in line]
    return (
        f"{host.node}: no udev rule in force answers a discovery log change AEN (NVME_AEN={DISCOVERY_CHANGE})"
        f" with nvme connect-all ({', '.join(hidden) or 'no 70-nvmf-autoconnect.rules'}; the first one is in force)"
    )


class AenWatch:
    """``udevadm monitor`` of the host's nvme uevents for the length of a case (journaled, stopped at its end)."""

    def __init__(self, host: Executor, journal: Journal) -> None:
        self.process = BackgroundProcess(
            host, journal, "nvme uevent monitor", "exec udevadm monitor --kernel --property --subsystem-match=nvme"
        )
        self.process.wait_for_line(r"KERNEL - the kernel uevent", timeout=60)

    def events(self) -> list[Uevent]:
        log = self.process.executor.run(f"cat {shlex.quote(self.process.log_file)}", timeout=30).stdout
        return parse_uevents(log)

    def wait_for(self, controller: str, aen: str, *, timeout: float) -> float:
        """Seconds until ``controller`` announced ``aen``; DriverError naming what arrived when it does not."""
        log_step(self.process.executor.node, f"wait for AEN {aen} from {controller}")
        start = time.monotonic()
        while True:
            events = self.events()
            if any(e.devpath.endswith(f"/{controller}") and e.properties.get("NVME_AEN") == aen for e in events):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                seen = ", ".join(
                    f"{e.devpath.rsplit('/', 1)[-1]} {e.properties.get('NVME_AEN', e.action)}" for e in events
                )
                raise DriverError(
                    f"{self.process.executor.node}: no AEN {aen} from {controller} within {timeout:.0f} s"
                    f" (nvme uevents seen: {seen or 'none'})"
                )
            time.sleep(1.0)
