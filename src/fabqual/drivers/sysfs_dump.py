"""Reading a one-round-trip dump of sysfs attributes, grouped by the device each belongs to.

A driver reads a class of devices at once with ``grep -H . /sys/class/X/*/attr ...``
(plus, where it needs them, lines of its own such as ``ls -d .../block/*``):
each line names a device, an attribute and its value. The driver's pattern
says where they stand, with the named groups ``attr`` and ``value`` and one
group naming the device. Pure: text in, dictionaries out.
"""

from __future__ import annotations

import re


def group_by_device(dump: str, device: str, *patterns: re.Pattern[str]) -> dict[str, dict[str, str]]:
    """``dump`` → device → attribute → value (stripped), the devices in the order first seen.

    Each line (stripped) is tried against ``patterns`` in turn; the first that
    matches gives the device (its group named ``device``), ``attr`` and
    ``value``. A line no pattern matches is skipped; of two lines of one
    attribute the later wins.
    """
    devices: dict[str, dict[str, str]] = {}
    for line in dump.splitlines():
        line = line.strip()
        for pattern in patterns:
            if match := pattern.match(line):
                devices.setdefault(match[device], {})[match["attr"]] = match["value"].strip()
                break
    return devices
