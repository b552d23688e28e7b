"""The background-process building block on a lab guest: waits, failures, stop, restart, sweep.

Every server fabqual starts (iperf3, perftest, the IPoFC daemons) is a
:class:`~fabqual.drivers.background.BackgroundProcess`. These tests run real
processes on the ``tgt`` guest — iperf3 as a real listener, ``sleep`` as one that
never listens, a shell that dies at once — and check the three questions: bad
start (one clear line plus the log's tail, at once when the process died), run
killed half-way (the next run's sweep stops the process), second run (the same
port is free again after a stop).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from fabqual.drivers.background import BackgroundProcess, serving
from fabqual.drivers.journal import Journal
from fabqual.drivers.rundir import RUN_ENV
from fabqual.drivers.sweep import sweep_node
from fabqual.errors import DriverError, LabError
from fabqual.executors.ssh import SshExecutor
from fabqual.lab import EmulatedLab

PORT = 5391  # iperf3's range, away from the ports run_iperf3 picks (5301 + pid % 500 counts up from there)


@pytest.fixture
def tgt(lab: EmulatedLab) -> Iterator[SshExecutor]:
    from fabqual.topology import load_topology

    executor = SshExecutor.for_node(load_topology(lab.topology_path).node("tgt"))
    yield executor
    executor.close()


def listening(executor: SshExecutor, port: int) -> bool:
    return bool(executor.run(f"ss -Hltn 'sport = :{port}'", timeout=30).stdout.strip())


def test_a_process_that_never_listens_fails_with_one_line_and_its_log_tail(tgt: SshExecutor) -> None:
    """Waiting for a port nobody opens ends after the timeout with one line naming node, process, pid
    and port, then the log's last lines; the journal stops the process and removes pidfile and log."""
    journal = Journal()
    process = BackgroundProcess(
        tgt, journal, "mute server", "echo 'configured, opening no socket'; exec sleep 600", failure=LabError
    )
    try:
        with pytest.raises(LabError) as caught:
            process.wait_for_port(PORT, timeout=3)
        first, *tail = str(caught.value).splitlines()
        assert first.startswith(f"tgt: mute server (pid {process.pid}) is not listening on TCP port {PORT} after 3 s")
        assert tail == ["    configured, opening no socket"]
        assert process.alive()
    finally:
        journal.undo_all()
    assert not process.alive()
    assert not tgt.run(f"ls {process.pidfile} {process.log_file}", timeout=30, check=False).ok


def test_a_process_that_dies_fails_at_once_with_its_last_words(tgt: SshExecutor) -> None:
    """A process that exits is reported as exited long before the wait's timeout, with what it printed."""
    journal = Journal()
    process = BackgroundProcess(tgt, journal, "doomed daemon", "echo 'no such device: rxe9' >&2; exit 3")
    started = time.monotonic()
    try:
        with pytest.raises(DriverError, match=r"(?s)doomed daemon \(pid \d+\) exited before printing.*rxe9"):
            process.wait_for_line(r"^ready", timeout=120)
        assert time.monotonic() - started < 60
    finally:
        journal.undo_all()


def test_stop_then_a_second_start_on_the_same_port_works(tgt: SshExecutor) -> None:
    """A real iperf3 server is found listening, stopped (port free, process gone, its mark was in its
    environment), and a second one on the same port starts and listens again."""
    for attempt in (1, 2):
        with serving(tgt, f"iperf3 server {attempt}", f"exec iperf3 -s -p {PORT}") as server:
            server.wait_for_port(PORT, timeout=30)
            environ = tgt.run(f"tr '\\0' '\\n' < /proc/{server.pid}/environ", timeout=30).stdout
            assert f"{RUN_ENV}=" in environ
            assert listening(tgt, PORT)
        assert not server.alive(), f"attempt {attempt}: the server outlived its block"
        assert not listening(tgt, PORT), f"attempt {attempt}: port {PORT} still taken"
    server.stop()  # a second stop is a no-op


def test_stop_escalates_to_kill_after_the_grace_period(tgt: SshExecutor) -> None:
    """A process that ignores TERM is KILLed once the grace period is over, and is gone when stop returns."""
    journal = Journal()
    process = BackgroundProcess(tgt, journal, "stubborn", "trap '' TERM; echo up; while :; do sleep 1; done", grace_s=1)
    process.wait_for_line("^up$", timeout=30)
    started = time.monotonic()
    journal.undo_all()
    assert 1 <= time.monotonic() - started < 20
    assert not process.alive()


CHILD = """
import sys, time
from fabqual.drivers.background import BackgroundProcess
from fabqual.drivers.journal import Journal
from fabqual.drivers.rundir import RunDirs
from fabqual.executors.ssh import SshExecutor
from fabqual.topology import load_topology

tgt = SshExecutor.for_node(load_topology(sys.argv[1]).node("tgt"))
server = BackgroundProcess(tgt, Journal(RunDirs(lambda name: tgt)), "orphan iperf3", "exec iperf3 -s -p PORT")
server.wait_for_port(PORT)
print("ready", server.pid, flush=True)
time.sleep(600)
""".replace("PORT", str(PORT))


def test_a_killed_runs_process_is_found_and_stopped_by_the_sweep(tgt: SshExecutor, lab: EmulatedLab) -> None:
    """A controller SIGKILLed while its server runs leaves that server listening; the next run's sweep
    finds it through the run directory's journal and pidfile and stops it."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lab.topology_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    if not line.startswith("ready "):
        pytest.fail(f"child did not get ready: {line}{child.communicate(timeout=30)[1][-2000:]}")
    pid = int(line.split()[1])
    assert tgt.run(f"kill -0 {pid}", timeout=30, check=False).ok and listening(tgt, PORT)
    result = sweep_node(tgt)
    assert "orphan iperf3 (pid" in result.line(), result.line()
    assert not tgt.run(f"kill -0 {pid}", timeout=30, check=False).ok, "the sweep left the server running"
    assert not listening(tgt, PORT)
