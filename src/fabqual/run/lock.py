"""An exclusive lock per rack, so two runs never drive the same hardware at once.

``flock`` on ``${FABQUAL_CACHE:-~/.cache/fabqual}/locks/<topology name>.lock``:
the kernel drops the lock when its holder exits, even on SIGKILL, so a crashed
run never leaves the rack locked. The holder writes who it is (pid, host, start
time, command) into the file; a second run reads that to name the holder in its
one-line refusal. The file is never deleted (deleting a lock file races with a
process that has just opened it).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from fabqual.errors import FabqualError

POLL_S = 0.5


class RackLockedError(FabqualError):
    """Another run holds the rack; the message names the holder and what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("FABQUAL_CACHE") or Path.home() / ".cache" / "fabqual")


def lock_path(topology_name: str, base: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", topology_name) or "unnamed"
    return (base or cache_dir()) / "locks" / f"{safe}.lock"


def describe_holder(path: Path) -> str:
    """Who holds the lock, from what the holder wrote into the file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return f"an unknown process (lock file {path})"
    return f"pid {info.get('pid')} on host {info.get('host')} since {info.get('started')} ({info.get('command', '?')})"


@contextmanager
def rack_lock(topology_name: str, *, wait: float = 0.0, base: Path | None = None) -> Iterator[Path]:
    """Hold the rack's lock for the ``with`` body; wait up to ``wait`` seconds for it.

    Raises :class:`RackLockedError` with one line naming the holder when the rack
    is still taken after ``wait`` seconds.
    """
    path = lock_path(topology_name, base)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        _acquire(handle, path, topology_name, wait)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv[:1] + sys.argv[1:6]),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(info))
        handle.flush()
        try:
            yield path
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def _acquire(handle: IO[str], path: Path, topology_name: str, wait: float) -> None:
    deadline = time.monotonic() + max(0.0, wait)
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait:.0f}s" if wait > 0 else ""
            raise RackLockedError(
                f"rack {topology_name!r} is locked by {describe_holder(path)}{waited};"
                " retry later or pass --wait SECONDS"
            )
        if not announced:
            print(
                f"fabqual: rack {topology_name!r} is locked by {describe_holder(path)}; waiting up to {wait:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            announced = True
        time.sleep(POLL_S)
