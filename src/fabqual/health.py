"""Kernel health gate: a test also fails when a node's kernel complained during it.

At the start of a test a unique marker line goes into each involved node's
kernel log (``/dev/kmsg``); at the end the log after the marker is searched for
the lines blktests treats as failures.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from fabqual.executors.base import Executor

BAD_KERNEL_LINE = re.compile(
    r"kernel BUG at|BUG:|WARNING:|Oops|Call Trace|general protection fault|"
    r"blocked for more than \d+ seconds|Internal error|suspicious RCU usage|circular locking"
)


@dataclass(frozen=True)
class KernelMarker:
    node: str
    text: str


def mark_kernel_log(executor: Executor, label: str) -> KernelMarker:
    """Write a unique marker into the node's kernel log and return it."""
    text = f"fabqual-marker {uuid.uuid4().hex[:12]} {label}"[:200]
    safe = text.replace("'", "")
    executor.run(f"echo '{safe}' > /dev/kmsg", timeout=30)
    return KernelMarker(executor.node, safe)


def kernel_lines_since(executor: Executor, marker: KernelMarker) -> list[str]:
    """The kernel log lines written after ``marker`` (all lines if it was rotated away)."""
    log = executor.run("dmesg 2>/dev/null || cat /var/log/kern.log", timeout=60).stdout.splitlines()
    for index in range(len(log) - 1, -1, -1):
        if marker.text in log[index]:
            return log[index + 1 :]
    return log


def bad_kernel_lines(lines: list[str]) -> list[str]:
    """The lines that show the kernel misbehaved."""
    return [line for line in lines if BAD_KERNEL_LINE.search(line)]
