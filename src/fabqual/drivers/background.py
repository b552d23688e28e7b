"""A background process on a node: started in the run directory, waited for, stopped, journaled.

Every server or daemon fabqual leaves running while it does something else (an
iperf3 or perftest server, the IPoFC runtime, a self-test's ``tcmu-runner``) is one
:class:`BackgroundProcess`:

- **start**: ``setsid`` makes it a process group of its own, its environment carries
  the run's mark (``FABQUAL_RUN=<run id>``), its pid goes to a pidfile in the run
  directory and its output to a log file there; the stop is journaled (on disk too)
  before anything waits for it, so a run killed at any point leaves a journal line
  and a pidfile from which the next run's sweep stops it — and never stops a
  process that merely reused the pid;
- **wait**: for a log line (:meth:`~BackgroundProcess.wait_for_line`) or a listening
  port (:meth:`~BackgroundProcess.wait_for_port`); a process that exits meanwhile,
  or is not ready in time, fails with one line naming the node, the process and
  what it waited for, followed by the tail of its log;
- **stop**: TERM to the whole group, KILL after a grace period, then wait until it
  is gone (the journal's undo; :meth:`~BackgroundProcess.stop` may also be called
  early, and a second call does nothing).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from fabqual.drivers.journal import Journal
from fabqual.drivers.rundir import RUN_ENV, RunDirs, stop_pidfile_command
from fabqual.errors import DriverError, FabqualError, LabError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import node_pid

TAIL_LINES = 10
POLL_S = 0.3
GRACE_S = 5.0


class BackgroundProcess:
    """One process started in the background on ``executor``'s node (see the module's docstring).

    ``failure`` is the error raised when it dies or is not ready: :class:`DriverError`
    for a link's daemon, :class:`~fabqual.errors.LabError` for a tool's server (the
    lab, not the device under test, is then broken).
    """

    def __init__(
        self,
        executor: Executor,
        journal: Journal,
        name: str,
        command: str,
        *,
        log_file: str | None = None,
        grace_s: float = GRACE_S,
        failure: type[FabqualError] = DriverError,
    ) -> None:
        self.executor = executor
        self.name = name
        self.grace_s = grace_s
        self.failure = failure
        self.stopped = False
        run = journal.run_dirs
        self.run_id = run.owner.run_id
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "process"
        self.log_file = log_file or f"{run.path(executor)}/{slug}.log"
        pids = PurePosixPath(run.pidfile(executor, slug)).parent
        q = shlex.quote
        # Recorded first so it is undone last: the log outlives the process for the error message.
        journal.record_command(executor, f"{name} log", f"rm -f {q(self.log_file)}")
        log_step(executor.node, f"start {name}: {command}")
        mark = q(f"{RUN_ENV}={self.run_id}")
        out = executor.run(
            f"nohup setsid env {mark} sh -c {q(command)} > {q(self.log_file)} 2>&1 < /dev/null &"
            f" p=$!; echo $p > {q(str(pids))}/{q(slug)}-$p.pid; echo $p",
            timeout=30,
        )
        self.pid = node_pid(executor.node, out.stdout)
        self.pidfile = f"{pids}/{slug}-{self.pid}.pid"
        journal.record(
            executor.node,
            f"{name} (pid {self.pid})",
            self.stop,
            replay=stop_pidfile_command(self.pidfile, self.run_id),
            executor=executor,
        )

    def alive(self) -> bool:
        return self.executor.run(f"kill -0 {self.pid}", timeout=30, check=False).ok

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        return self.executor.run(f"tail -n {lines} {shlex.quote(self.log_file)}", timeout=30, check=False).stdout

    def fail(self, what: str) -> FabqualError:
        """The error for ``what`` went wrong: one line, then the last lines of the log, indented."""
        tail = self.log_tail().rstrip().splitlines()
        body = "\n".join(f"    {line}" for line in tail) if tail else "    (the log is empty)"
        return self.failure(
            f"{self.executor.node}: {self.name} (pid {self.pid}) {what}; the last lines of {self.log_file}:\n{body}"
        )

    def check_alive(self) -> None:
        if self.stopped or not self.alive():
            raise self.fail("exited" if not self.stopped else "was stopped")

    def wait_for_line(self, pattern: str, *, timeout: float = 60.0) -> str:
        """The first log line matching ``pattern`` (e.g. a "ready" line); fails early when the process exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            log = self.executor.run(f"cat {shlex.quote(self.log_file)}", timeout=30, check=False).stdout
            for line in log.splitlines():
                if regex.search(line):
                    return line
            if not self.alive():
                raise self.fail(f"exited before printing a line matching {pattern!r}")
            if time.monotonic() > deadline:
                raise self.fail(f"printed no line matching {pattern!r} in {timeout:.0f} s")
            time.sleep(POLL_S)

    def wait_for_port(self, port: int, *, udp: bool = False, timeout: float = 30.0) -> None:
        """Until a socket of this node listens on ``port`` (``ss``); fails early when the process exits."""
        flags = "-Hlun" if udp else "-Hltn"
        probe = f"ss {flags} 'sport = :{int(port)}'; kill -0 {self.pid}"
        deadline = time.monotonic() + timeout
        what = f"{'UDP' if udp else 'TCP'} port {port}"
        while True:
            out = self.executor.run(probe, timeout=30, check=False)
            if out.stdout.strip() and out.ok:
                return
            if not out.ok:
                raise self.fail(f"exited before listening on {what}")
            if time.monotonic() > deadline:
                raise self.fail(f"is not listening on {what} after {timeout:.0f} s")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """TERM to the process group, KILL after the grace period; only while it carries this run's mark."""
        if self.stopped:
            return
        log_step(self.executor.node, f"stop {self.name} (pid {self.pid})")
        command = stop_pidfile_command(self.pidfile, self.run_id, grace_s=self.grace_s)
        self.executor.run(f"{command}; rm -f {shlex.quote(self.pidfile)}", timeout=self.grace_s + 30)
        self.stopped = True


@contextmanager
def serving(
    executor: Executor,
    name: str,
    command: str,
    *,
    run_dirs: RunDirs | None = None,
    failure: type[FabqualError] = LabError,
) -> Iterator[BackgroundProcess]:
    """A tool's server for the length of a ``with`` block, in a journal of its own: stopped (and its
    log removed) when the block ends. A teardown failure after the block failed is logged, so it
    never hides the block's own error."""
    journal = Journal(run_dirs)
    try:
        yield BackgroundProcess(executor, journal, name, command, failure=failure)
    except BaseException:
        try:
            journal.undo_all()
        except FabqualError as error:
            log_step(executor.node, f"after the failure above, {name} was not stopped cleanly: {error}")
        raise
    journal.undo_all()
