"""A pytest plugin for the lost-node self-test's inner run: kill a guest's QEMU during one row.

Loaded with ``-p tests.self.lab.kill_guest_plugin``; ``FABQUAL_KILL_ROW`` names the row (its node
id), ``FABQUAL_KILL_PID`` the QEMU to kill and ``FABQUAL_KILL_AFTER_S`` how long into the row's
call. Nothing in fabqual knows about it: the run sees a node vanish as on a rack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import pytest

ROW = "FABQUAL_KILL_ROW"
PID = "FABQUAL_KILL_PID"
AFTER = "FABQUAL_KILL_AFTER_S"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pytest_runtest_call(item: pytest.Item) -> None:
    if item.nodeid == os.environ.get(ROW):
        timer = threading.Timer(float(os.environ.get(AFTER, "5")), _kill, args=(int(os.environ[PID]),))
        timer.daemon = True
        timer.start()
