"""The on-disk journal and the sweep: what a SIGKILLed process did on a node is undone by the next.

The lab tests start a real child process that changes a guest through journaled
steps (a network namespace, a TUN device in it, a sysctl, a marked daemon) and
SIGKILL it; the sweep must then restore the guest exactly, leave live runs and
unmarked processes alone, and change nothing on a dry run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabqual.drivers.rundir import RUNS, RunOwner, process_start
from fabqual.drivers.sweep import parse_listing, sweep_node
from fabqual.executors.ssh import SshExecutor
from fabqual.lab import EmulatedLab

REPO = Path(__file__).resolve().parents[3]

# Captured on the emulated lab's tgt guest (Debian 12) with fabqual.drivers.sweep.LISTING after CHILD
# (below) was SIGKILLed; the last, torn line was appended by hand as a kill in the middle of an append
# would leave it.
LISTING_OUTPUT = (
    "\n@@fabqual-run /var/lib/fabqual/runs/20261204T163035-27497.9oEJKN\n"
    '{"command": "-c /root/.cache/fabqual-cleanup/lab/run/topology.yaml", "host": "vm", "pid": 27497,'
    ' "pid_start": "178110", "run_id": "20261204T163035-27497", "started": "2026-12-04T16:30:35Z"}\n'
    "@@fabqual-journal\n"
    '{"j": "27497.1", "undo": "ip netns del fq-sweep", "what": "network namespace fq-sweep"}\n'
    '{"j": "27497.1", "undo": "ip netns exec fq-sweep sh -c \'ip link del dev fqsw0\'", "what": "TUN fqsw0"}\n'
    '{"j": "27497.1", "undo": "ip netns exec fq-sweep sh -c \'echo 2 > /proc/sys/net/ipv4/tcp_min_tso_segs\'",'
    ' "what": "tcp_min_tso_segs 2"}\n'
    '{"j": "27497.1", "undo": "rm -f /var/lib/fabqual/runs/20261204T163035-27497.9oEJKN/daemon.log",'
    ' "what": "sweep test daemon log"}\n'
    '{"j": "27497.1", "undo": "p=$(cat /var/lib/fabqual/runs/20261204T163035-27497.9oEJKN/pids/'
    '20261204T163035-27497.9oEJKN-sweep_test_daemon.pid 2>/dev/null); [ -z \\"$p\\" ] || true",'
    ' "what": "sweep test daemon (pid 549)"}\n'
    '{"j": "x.9", "undo": "echo 3 > /proc/sys/net/ipv4/tcp_m'
)
STEPS = ["network namespace fq-sweep", "TUN fqsw0", "tcp_min_tso_segs 2", "sweep test daemon log"]


def test_listing_keeps_open_steps_in_order_and_ignores_a_line_torn_by_the_kill() -> None:
    """Every whole journal line is a step, oldest first; a line cut short by the kill is ignored."""
    (run,) = parse_listing(LISTING_OUTPUT)
    assert run.path == "/var/lib/fabqual/runs/20261204T163035-27497.9oEJKN"
    assert run.owner is not None and run.owner.pid == 27497 and run.owner.run_id == "20261204T163035-27497"
    assert [s["what"] for s in run.steps] == [*STEPS, "sweep test daemon (pid 549)"]


def test_closed_journals_are_not_replayed_and_a_directory_without_owner_is_still_found() -> None:
    """A journal its process undid completely (closed) is skipped; a directory whose owner.json is
    missing (killed between mktemp and the write) is listed with no owner."""
    closed = LISTING_OUTPUT.rsplit("\n", 1)[0] + '\n{"closed": "27497.1"}\n'
    unowned = "\n@@fabqual-run /var/lib/fabqual/runs/20261204T163100-5151.a0B1c2\n\n@@fabqual-journal\n"
    first, second = parse_listing(closed + unowned)
    assert first.steps == []
    assert second.owner is None and second.steps == [] and "unowned" in second.name


def test_a_step_journaled_ahead_and_then_refused_is_not_replayed() -> None:
    """Journal.ahead writes the undo before the change; when the change is refused (the name was
    someone else's) a void line cancels it, so a sweep never removes what the run did not make."""
    lines = [
        '{"j": "7.1", "n": 1, "undo": "rmdir /sys/kernel/config/nvmet/ports/1", "what": "nvmet port 1"}',
        '{"j": "7.1", "n": 2, "undo": "rmdir /sys/kernel/config/nvmet/ports/2", "what": "nvmet port 2"}',
        '{"j": "7.1", "void": 1}',
    ]
    listing = "\n@@fabqual-run /var/lib/fabqual/runs/r.1\n\n@@fabqual-journal\n" + "\n".join(lines) + "\n"
    (run,) = parse_listing(listing)
    assert [s["what"] for s in run.steps] == ["nvmet port 2"]


def test_owner_of_a_dead_or_reused_pid_is_not_alive() -> None:
    """A run is alive only if its pid runs with the start time it recorded (a reused pid is not the run)."""
    me = RunOwner.this_process()
    assert me.alive() is True
    reused = RunOwner(me.run_id, me.host, me.pid, str(int(process_start(os.getpid())) + 1), me.started, me.command)
    assert reused.alive() is False
    assert RunOwner(me.run_id, "another-controller", me.pid, me.pid_start, me.started, "").alive() is None


CHILD = """
import sys, time
from fabqual.drivers.journal import Journal
from fabqual.drivers.rundir import RunDirs
from fabqual.executors.ssh import SshExecutor
from fabqual.drivers.background import BackgroundProcess
from fabqual.links.ipofc import TunDevice, raise_min_tso_segs
from fabqual.executors.netns import NetnsExecutor
from fabqual.topology import load_topology

node = load_topology(sys.argv[1]).node("tgt")
tgt = SshExecutor.for_node(node)
journal = Journal(RunDirs(lambda name: tgt))
tgt.run("ip netns add fq-sweep && ip -n fq-sweep link set lo up", timeout=30)
journal.record_command(tgt, "network namespace fq-sweep", "ip netns del fq-sweep")
inside = NetnsExecutor(tgt, "fq-sweep")
TunDevice(inside, journal, "fqsw0", "10.99.0.1", 30)
raise_min_tso_segs(inside, journal)
BackgroundProcess(tgt, journal, "sweep test daemon", "exec sleep 600")
print("ready", journal.run_dirs.path(tgt), flush=True)
time.sleep(600)
"""

STATE = (
    "ip netns list; ip -brief link show type tun; cat /proc/sys/net/ipv4/tcp_min_tso_segs;"
    " pgrep -a -x sleep | grep ' 600$'; ls /var/lib/fabqual/runs 2>/dev/null; true"
)


@pytest.fixture
def tgt(lab: EmulatedLab) -> Iterator[SshExecutor]:
    from fabqual.topology import load_topology

    executor = SshExecutor.for_node(load_topology(lab.topology_path).node("tgt"))
    yield executor
    executor.close()


def killed_child(lab: EmulatedLab) -> tuple[subprocess.Popen[str], str]:
    """Start CHILD, wait until it changed the guest, SIGKILL it; return it and its run directory."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lab.topology_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("ready "):
        child.kill()
        pytest.fail(f"child did not get ready: {line}{child.communicate(timeout=30)[1][-2000:]}")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    return child, line.split()[1]


def test_sweep_replays_a_killed_process_journal_and_leaves_the_node_as_before(
    tgt: SshExecutor, lab: EmulatedLab
) -> None:
    """After SIGKILL the run directory holds the journal; a dry run changes nothing; the sweep restores
    the netns, TUN, sysctl and daemon state, keeps an unmarked process whose pid sits in a pidfile, and
    removes the directory."""
    before = tgt.run(STATE, timeout=60).stdout
    _child, path = killed_child(lab)
    during = tgt.run(STATE, timeout=60).stdout
    assert "fq-sweep" in during and path.rsplit("/", 1)[-1] in during
    assert tgt.run(f"stat -c %a {path}", timeout=30).stdout.strip() == "700"
    # A process without the run's mark whose pid is written into the run's pidfile: never killed.
    bystander = tgt.run("nohup sleep 601 >/dev/null 2>&1 & echo $!", timeout=30).stdout.strip()
    tgt.run(f"echo {bystander} > {path}/pids/bystander.pid", timeout=30)
    try:
        dry = sweep_node(tgt, dry_run=True)
        assert tgt.run(STATE, timeout=60).stdout == during, "a dry run changed the node"
        assert "would undo" in dry.line(dry_run=True) and "network namespace fq-sweep" in dry.line(dry_run=True)
        result = sweep_node(tgt)
        assert result.swept and not result.already_gone, result.line()
        assert "TUN fqsw0" in result.undone and "IPoFC" not in result.line()
        assert tgt.run(f"kill -0 {bystander}", timeout=30, check=False).ok, "the sweep killed an unmarked process"
    finally:
        tgt.run(f"kill {bystander}", timeout=30, check=False)
    assert tgt.run(STATE, timeout=60).stdout == before
    assert sweep_node(tgt).line() == "tgt: nothing left by earlier runs"


def test_a_live_run_is_never_swept(tgt: SshExecutor, lab: EmulatedLab) -> None:
    """A run whose process is alive (same pid and start time) is named and left alone, journal and all."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lab.topology_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    try:
        line = child.stdout.readline()
        assert line.startswith("ready "), child.communicate(timeout=30)
        result = sweep_node(tgt)
        assert not result.swept and f"pid {child.pid}" in result.line() and "still running" in result.line()
        assert tgt.run("ip netns list", timeout=30).stdout.count("fq-sweep") == 1
    finally:
        child.kill()
        child.wait(timeout=30)
    assert sweep_node(tgt).swept  # now it is dead: swept


def test_fabqual_clean_by_hand_dry_run_then_for_real(tgt: SshExecutor, lab: EmulatedLab) -> None:
    """`fabqual clean --topology F --dry-run` names what it would remove on each node and changes nothing;
    `fabqual clean` removes it; a second `fabqual clean` finds nothing."""
    before = tgt.run(STATE, timeout=60).stdout
    killed_child(lab)
    during = tgt.run(STATE, timeout=60).stdout

    def clean(*extra: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "fabqual.cli", "clean", "--topology", str(lab.topology_path), *extra],
            capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    dry = clean("--dry-run")
    assert "tgt: swept 1 killed run(s)" in dry and "would undo" in dry and "ini: nothing left" in dry
    assert tgt.run(STATE, timeout=60).stdout == during
    assert "tgt: swept 1 killed run(s)" in clean()
    assert tgt.run(STATE, timeout=60).stdout == before
    assert clean().splitlines() == ["tgt: nothing left by earlier runs", "ini: nothing left by earlier runs"]


def test_journal_lines_are_json_with_the_undo_as_it_runs_on_the_node(tgt: SshExecutor, lab: EmulatedLab) -> None:
    """A step in a network namespace is journaled wrapped in `ip netns exec`, so a replay runs it there."""
    _child, path = killed_child(lab)
    try:
        lines = [json.loads(x) for x in tgt.run(f"cat {path}/journal", timeout=30).stdout.splitlines()]
        undo = {line["what"]: line["undo"] for line in lines}
        assert undo["TUN fqsw0"] == "ip netns exec fq-sweep sh -c 'ip link del dev fqsw0'"
        assert undo["network namespace fq-sweep"] == "ip netns del fq-sweep"
        (daemon,) = [u for what, u in undo.items() if what.startswith("sweep test daemon (pid ")]
        assert "FABQUAL_RUN=" in daemon and "/pids/" in daemon
    finally:
        sweep_node(tgt)
    assert RUNS not in tgt.run(f"ls -d {RUNS}/* 2>/dev/null; true", timeout=30).stdout
