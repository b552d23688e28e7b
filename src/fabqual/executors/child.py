"""Ending a program this machine started (``subprocess.Popen``): ask it to stop, then kill and reap it.

The one way fabqual stops a local child it started (vcsim, a throwaway sshd, a
matrix cell's pytest): ``signum`` first so it can undo what it set up, SIGKILL
after ``grace_s``, and always reaped, so no zombie or orphan is left behind.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def end_child(child: subprocess.Popen[Any], *, grace_s: float, signum: int = signal.SIGTERM) -> int:
    """Send ``signum`` if ``child`` still runs, SIGKILL it after ``grace_s`` seconds; its exit status."""
    if child.poll() is None:
        child.send_signal(signum)
    try:
        return child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()
