"""A throwaway PostgreSQL cluster for tests: Debian's ``postgresql`` binaries, a temp dir, one port.

``initdb`` and ``pg_ctl`` (from ``/usr/lib/postgresql/<version>/bin``), no
``pg_ctlcluster`` and no system service: the cluster lives in a temp dir,
listens on 127.0.0.1 and a unix socket there, and is stopped (``pg_ctl stop -m
immediate``) on exit. PostgreSQL refuses to run as root, so when this runs as
root the cluster belongs to ``nobody`` (``setpriv`` drops the privileges).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUPERUSER = "fabqual"


def postgres_bin() -> Path | None:
    """The newest installed server's bin directory, or None when Debian's postgresql is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster in a new temp dir; yield a ``postgresql://`` URL of an empty database ``fabqual``.

    The directory is made directly under the system temp dir: pytest's
    ``tmp_path`` lies under a root-only directory that ``nobody`` cannot enter.
    """
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="fabqual-pg-"))
    data, log = directory / "data", directory / "postgres.log"
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(directory, user.pw_uid, user.pw_gid)
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "HOME": str(directory)}

    def run(*command: str) -> None:
        subprocess.run([*prefix, *command], check=True, env=env, cwd=directory, capture_output=True, timeout=180)

    run(str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "120", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "fabqual")
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/fabqual"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            env=env,
            cwd=directory,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(directory, ignore_errors=True)
