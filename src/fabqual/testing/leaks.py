"""What fabqual leaves on nodes: a state snapshot, and runs of the suite that get killed.

Shared by the kill self-test (``tests/self/lab/test_kill.py``) and the kill soak
(``benchmarks/bench_kill.py``): both snapshot every node before the first run,
kill acceptance runs at chosen points, and compare after one clean run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from queue import Empty, Queue
from typing import IO

import yaml

from fabqual.executors.ssh import SshExecutor
from fabqual.topology import Topology

# One short row per link type of the emulated lab.
FC = "tests/acceptance/test_nvme_fio.py::test_fio[tr=fc-rw=randwrite-bs=4k-qd=32]"
RDMA = "tests/acceptance/test_nvme_fio.py::test_fio[tr=rdma-rw=randwrite-bs=4k-qd=32]"
TCP = "tests/acceptance/test_nvme_fio.py::test_fio[tr=tcp-rw=randwrite-bs=4k-qd=32]"
FCP = "tests/acceptance/test_nvme_fio.py::test_fio[tr=fcp-rw=randwrite-bs=4k-qd=32]"
PVRDMA = "tests/acceptance/test_rdma_perftest.py::test_bandwidth[tr=pvrdma-test=ib_write_bw-size=64k]"
IPOFC = "tests/acceptance/test_ipofc.py::test_ping[mtu=1500-tr=ipofc]"
IPERF = "tests/acceptance/test_ipofc.py::test_iperf3_tcp[mtu=1500-tr=ipofc-dir=to_target]"
ROWS = {"fc_nvme": FC, "nvmet_rdma": RDMA, "nvme_tcp": TCP, "pvrdma": PVRDMA, "ipofc": IPOFC, "fcp": FCP}

# What fabqual creates on a node (contents only: an empty configfs folder of a loaded module is not state).
NODE_STATE = (
    "for d in /sys/kernel/config/nvmet/subsystems /sys/kernel/config/nvmet/ports /sys/kernel/config/nvmet/hosts"
    " /sys/class/nvme /sys/bus/fcoe/devices /sys/class/scsi_device; do"
    ' echo "$d: $(ls $d 2>/dev/null | tr "\\n" " ")"; done;'
    " echo lio: $(find /sys/kernel/config/target -mindepth 2 -maxdepth 2 -type d 2>/dev/null"
    " | grep -v '/core/alua$' | sort);"
    " echo nullb: $(ls /sys/block | grep nullb) $(ls -d /sys/kernel/config/nullb/*/ 2>/dev/null);"
    " echo rdma: $(rdma link show 2>/dev/null | grep -o '^link [^ ]*');"
    " echo tun: $(ip -brief link show type tun); echo netns: $(ip netns list);"
    " echo tso: $(cat /proc/sys/net/ipv4/tcp_min_tso_segs);"
    " echo procs: $(pgrep -a -f 'fabqual|iperf3|ib_write|ib_send|ib_read|^fio ' | grep -v pgrep | cut -d' ' -f2-);"
    " echo runs: $(ls /var/lib/fabqual/runs 2>/dev/null)"
)


def node_state(topology: Topology) -> dict[str, str]:
    """Every node's :data:`NODE_STATE`, by node name."""
    state = {}
    for node in topology.nodes:
        executor = SshExecutor.for_node(node)
        try:
            state[node.name] = executor.run(NODE_STATE, check=False, timeout=60).stdout
        finally:
            executor.close()
    return state


def leaked(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The lines of the snapshots that differ, as ``node: line`` (empty: nothing leaked)."""
    out = []
    for node, text in after.items():
        old = set(before.get(node, "").splitlines())
        out += [f"{node}: {line}" for line in text.splitlines() if line not in old]
    return out


def vcsim_processes(settle: float = 0.0) -> list[str]:
    """vcsim processes started from this cache (a killed run's simulator must not outlive it).

    With ``settle``, wait up to that many seconds for them to be gone (a simulator
    notices its parent's death when its stdin closes, a moment after the kill).
    """
    deadline = time.monotonic() + settle
    while True:
        found = _vcsims()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def vcsim_dirs() -> list[str]:
    """The controller's simulator directories (certificate, log, build tree) that exist now: after a
    clean run only live starters' may be left (a killed starter's is removed at the next start)."""
    return sorted(str(p) for p in Path(tempfile.gettempdir()).glob("fabqual-vcsim-*"))


def _vcsims() -> list[str]:
    cache = os.environ.get("FABQUAL_CACHE") or str(Path.home() / ".cache" / "fabqual")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "vcsim" in cmdline and cache in cmdline:
                found.append(f"{entry.name} {cmdline}")
    return found


def loose_profile(path: Path) -> Path:
    """The emulated profile with every floor / 100 and every ceiling x 100, written to ``path``.

    Kill runs prove the cleanup and that every row still runs end to end (tools ran,
    outputs parsed, values recorded), not the speed of a host shared by many labs.
    """
    data = yaml.safe_load(resources.files("fabqual").joinpath("data/thresholds/emulated.yaml").read_text())
    for metrics in data["links"].values():
        for rules in metrics.values():
            for rule in rules:
                if "min" in rule:
                    rule["min"] = rule["min"] / 100
                if "max" in rule:
                    rule["max"] = rule["max"] * 100
    data["profile"] = path.stem
    path.write_text(yaml.safe_dump(data))
    return path


def acceptance(topology: Path, profile: Path, marker: str, *rows: str) -> list[str]:
    """The user's command line: ``pytest <rows> --topology F -m <marker>``, steps logged live."""
    return [
        sys.executable, "-m", "pytest", *rows, "--topology", str(topology), "-m", marker,
        "--profile", str(profile), "-p", "no:cacheprovider", "-o", "log_cli=true", "--log-cli-level=INFO",
        "--no-health-gate",
    ]  # fmt: skip


@dataclass(frozen=True)
class Stopped:
    output: str
    returncode: int | None
    signalled: bool  # the signal was sent (the run reached the point before ending by itself)


def run_and_signal(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    pattern: str | None = None,
    after: float | None = None,
    signum: int = signal.SIGKILL,
    grace: float = 300.0,
    timeout: float = 1200.0,
) -> Stopped:
    """Run ``command``; at the first output line matching ``pattern`` (or ``after`` seconds) send it
    ``signum`` (the process alone, as a CI runner's kill would). A run still there ``grace`` seconds
    after a SIGINT/SIGTERM is SIGKILLed (the second Ctrl-C)."""
    child = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert child.stdout is not None
    queue: Queue[str | None] = Queue()
    reader = threading.Thread(target=_read_lines, args=(child.stdout, queue), daemon=True)
    reader.start()
    lines: list[str] = []
    start = time.monotonic()
    regex = re.compile(pattern) if pattern else None
    signalled, sent_at, ended = False, 0.0, False
    while not ended:
        try:
            line = queue.get(timeout=0.2)
        except Empty:
            line = ""
        if line is None:
            ended = True
        else:
            lines.append(line)
        elapsed = time.monotonic() - start
        hit = regex is not None and bool(line) and bool(regex.search(line or ""))
        if not signalled and child.poll() is None and (hit or (after is not None and elapsed >= after)):
            child.send_signal(signum)
            signalled, sent_at = True, time.monotonic()
        overdue = signalled and signum != signal.SIGKILL and time.monotonic() - sent_at > grace
        if (overdue or elapsed > timeout) and child.poll() is None:
            child.kill()
    child.wait(timeout=60)
    reader.join(timeout=10)
    return Stopped("".join(lines), child.returncode, signalled)


def _read_lines(stream: IO[str], queue: Queue[str | None]) -> None:
    for line in stream:
        queue.put(line)
    stream.close()
    queue.put(None)


def run_ids(output: str) -> list[str]:
    """The run ids of the run directories a run made (from its logged steps)."""
    return sorted(set(re.findall(r"run directory /var/lib/fabqual/runs/(\d{8}T\d{6}-\d+)\.", output)))
