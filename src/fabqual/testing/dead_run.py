"""A run owner whose process has ended: what a killed run's marks name, for sweep tests."""

from __future__ import annotations

import subprocess
import sys

from fabqual.drivers.rundir import RunOwner

_PRINT_OWNER = "from fabqual.drivers.rundir import RunOwner; print(RunOwner.this_process().to_json())"


def dead_owner() -> RunOwner:
    """The owner record of a child process that has already exited (so it is not alive)."""
    out = subprocess.run(
        [sys.executable, "-c", _PRINT_OWNER], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    owner = RunOwner.from_json(out)
    if owner is None or owner.alive() is not False:
        raise AssertionError(f"a finished child's owner record is not dead: {out!r}")
    return owner
