"""A host's reconnect attempts as its kernel logged them: when each failed, for one controller.

``dmesg`` lines look like ``[  842.910004] nvme nvme0: Failed reconnect attempt 2``
(nvme-rdma, nvme-tcp) or ``[ 12.5] nvme nvme1: NVME-FC{0}: reset: Reconnect
attempt failed (-111)`` (nvme-fc). Pure: the text in, the seconds since boot out.
"""

from __future__ import annotations

import re
from itertools import pairwise

from fabqual.errors import ParseError

_LINE = re.compile(r"^\[\s*(\d+\.\d+)\]\s+nvme (nvme\d+): (.*)$")
_FAILED = re.compile(r"Failed reconnect attempt|Reconnect attempt failed")


def reconnect_failures(dmesg: str, controller: str, since: float) -> list[float]:
    """Seconds since boot of each failed reconnect attempt of ``controller`` logged after ``since``."""
    if dmesg.strip() and not any(_LINE.match(line) or line.startswith("[") for line in dmesg.splitlines()):
        raise ParseError("dmesg", "no '[seconds] ...' lines: is this dmesg's default output?", dmesg)
    times: list[float] = []
    for line in dmesg.splitlines():
        match = _LINE.match(line.strip())
        if match and match[2] == controller and _FAILED.search(match[3]) and float(match[1]) > since:
            times.append(float(match[1]))
    return times


def intervals(times: list[float]) -> list[float]:
    """The gaps between successive attempts."""
    return [later - earlier for earlier, later in pairwise(times)]
