"""Benchmark: 200 trivial commands through one reused SshExecutor vs 200 fresh `ssh` processes.

Both run `true` as root on a throwaway sshd on 127.0.0.1 (fabqual.testing.sshd),
with the same key and known_hosts. The executor's time includes opening its one
connection. The two sides run in alternating blocks of 20, so load from other
work on a shared machine falls on both alike. Writes benchmarks/results/ssh.json and prints it.

    python benchmarks/bench_ssh.py [--commands 200]    # with the repository's .venv active

Not a timed test: the numbers depend on the machine and its load (recorded too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from fabqual.executors import SshExecutor
from fabqual.testing.sshd import SshServer

RESULTS = Path(__file__).resolve().parent / "results" / "ssh.json"


def ssh_argv(server: SshServer) -> list[str]:
    """A fresh OpenSSH client connection per call, configured like the executor (key only, host key checked)."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(server.port),
        "-i",
        str(server.client_key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={server.known_hosts}",
        f"{server.user}@{server.host}",
        "true",
    ]


def time_executor(executor: SshExecutor, count: int) -> float:
    """Run ``count`` commands through ``executor`` (it connects on its first command if it must)."""
    start = time.perf_counter()
    for _ in range(count):
        executor.run("true")
    return time.perf_counter() - start


def time_fresh_ssh(server: SshServer, count: int) -> float:
    argv = ssh_argv(server)
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return time.perf_counter() - start


def bashrc_ms(rounds: int = 5) -> float | None:
    """Time to source root's ~/.bashrc: Debian's bash does it for every command sshd runs, on both sides."""
    rc = Path.home() / ".bashrc"
    if not rc.exists() or not os.environ.get("SHELL", "/bin/bash").endswith("bash"):
        return None
    start = time.perf_counter()
    for _ in range(rounds):
        subprocess.run(["bash", "-c", f". {rc}"], check=False, capture_output=True)
    sourced = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(rounds):
        subprocess.run(["bash", "-c", "true"], check=False, capture_output=True)
    bare = time.perf_counter() - start
    return round(1000 * (sourced - bare) / rounds, 1)


def _blocks(total: int, size: int) -> list[int]:
    return [min(size, total - done) for done in range(0, total, size)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--block", type=int, default=20, help="commands per side before switching sides")
    args = parser.parse_args()
    count: int = args.commands
    with SshServer() as server:
        # One untimed round of each, so neither side pays for cold caches.
        warm = SshExecutor(
            "warm", server.host, server.port, key_file=str(server.client_key), known_hosts=str(server.known_hosts)
        )
        time_executor(warm, 2)
        warm.close()
        time_fresh_ssh(server, 2)
        load_before = os.getloadavg()[0]
        # The machine is shared: alternate blocks of each side so a change in load hits both alike.
        # The executor connects inside its first timed block and keeps that connection throughout.
        executor = SshExecutor(
            "bench", server.host, server.port, key_file=str(server.client_key), known_hosts=str(server.known_hosts)
        )
        reused = fresh = 0.0
        try:
            for block in _blocks(count, args.block):
                reused += time_executor(executor, block)
                fresh += time_fresh_ssh(server, block)
        finally:
            executor.close()
        load_after = os.getloadavg()[0]
        rc_ms = bashrc_ms()
        ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    if reused <= 0 or fresh <= 0:
        print(f"bench_ssh: a measured time is not positive (reused={reused}, fresh={fresh})", file=sys.stderr)
        return 1
    result = {
        "benchmark": "ssh_executor_reuse",
        "commands": count,
        "command": "true",
        "method": "alternating blocks of each side; the executor's one connect is included in its time",
        "reused_executor_s": round(reused, 3),
        "fresh_ssh_processes_s": round(fresh, 3),
        "reused_per_command_ms": round(1000 * reused / count, 2),
        "fresh_per_command_ms": round(1000 * fresh / count, 2),
        "speedup_fresh_over_reused": round(fresh / reused, 2),
        "login_shell_bashrc_ms": rc_ms,
        "note": "each command, reused or not, starts the login shell on the node; login_shell_bashrc_ms is"
        " what sourcing root's ~/.bashrc adds to every command on this machine",
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(load_after, 2),
            "python": platform.python_version(),
            "paramiko": version("paramiko"),
            "openssh": ssh_version,
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
