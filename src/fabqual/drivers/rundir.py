"""A run's private directory on each node: its on-disk undo journal, pidfiles and uploads.

Every node a run touches gets ``/var/lib/fabqual/runs/<run-id>.XXXXXX`` (``mktemp
-d``, mode 0700) holding:

- ``owner.json`` — who the run is (run id, controller host, pid and that pid's
  start time, so a reused pid is not taken for the run);
- ``journal`` — one JSON line per undo step, appended as steps are taken, so a
  later process can replay exactly what a killed one did (:mod:`.sweep`);
- ``pids/<name>.pid`` — one per daemon the run started;
- whatever the run uploads or has tools write (runtime copies, logs, reports).

A directory is removed as soon as every journal recorded in it has been undone
completely; one that a teardown could not empty is kept for the next sweep.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fabqual.errors import DriverError
from fabqual.executors.base import Executor, log_step

RUNS = "/var/lib/fabqual/runs"
RUN_ENV = "FABQUAL_RUN"  # set in every daemon's environment: the mark a sweep checks before a kill


def process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), or ''."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


@dataclass(frozen=True)
class RunOwner:
    """Which process on which controller a run directory belongs to."""

    run_id: str
    host: str
    pid: int
    pid_start: str
    started: str
    command: str

    @classmethod
    def this_process(cls) -> RunOwner:
        pid = os.getpid()
        now = time.gmtime()
        return cls(
            run_id=f"{time.strftime('%Y%m%dT%H%M%S', now)}-{pid}",
            host=socket.gethostname(),
            pid=pid,
            pid_start=process_start(pid),
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
            command=" ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:6])),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunOwner | None:
        try:
            data = json.loads(text)
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None

    def alive(self) -> bool | None:
        """True/False when the run's controller is this host; None when it is another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        return bool(self.pid_start) and process_start(self.pid) == self.pid_start

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.started})"


ExecutorFor = Callable[[str], Executor]


class _Every:
    def __contains__(self, _item: object) -> bool:
        return True


class RunDirs:
    """This run's directory on every node it touches, created on first use."""

    def __init__(
        self, executor_for: ExecutorFor | None = None, owner: RunOwner | None = None, *, root: str = RUNS
    ) -> None:
        self.owner = owner or RunOwner.this_process()
        self.root = root  # where run directories live on every node (another only for self-tests)
        self._executor_for = executor_for
        self._executors: dict[str, Executor] = {}
        self._paths: dict[str, str] = {}
        self._open: dict[str, set[str]] = {}  # node -> journals with steps not yet undone
        self._kept: set[str] = set()  # nodes whose directory a failed teardown keeps for the sweep

    def executor(self, node: str) -> Executor:
        if node in self._executors:
            return self._executors[node]
        if self._executor_for is None:
            raise DriverError(f"run {self.owner.run_id}: no executor known for node {node}")
        return self._executor_for(node)

    def known_nodes(self) -> set[str] | _Every:
        """The nodes this object can reach: every node when it has the session's executors."""
        return _Every() if self._executor_for is not None else set(self._executors)

    def path(self, executor: Executor) -> str:
        """The run's directory on ``executor``'s node (made, mode 0700, on first use)."""
        executor, _ = on_node(executor, "")
        node = executor.node
        self._executors.setdefault(node, executor)
        if node not in self._paths:
            q = shlex.quote
            root = q(self.root)
            template = f"{self.root}/{self.owner.run_id}.XXXXXX"
            out = executor.run(
                f'mkdir -p {root} && chmod 0755 {root} && d=$(mktemp -d {q(template)}) && chmod 0700 "$d"'
                f' && mkdir "$d/pids" && printf %s {q(self.owner.to_json())} > "$d/owner.json" && echo "$d"',
                timeout=30,
                check=False,
            )
            path = out.stdout.strip().splitlines()[-1] if out.ok and out.stdout.strip() else ""
            if not path.startswith(f"{self.root}/"):
                why = (out.stderr or out.stdout).strip() or f"exit {out.exit_status}"
                raise DriverError(f"{node}: cannot make the run directory under {self.root}: {why}; fabqual needs root")
            log_step(node, f"run directory {path}")
            self._paths[node] = path
        return self._paths[node]

    def pidfile(self, executor: Executor, name: str) -> str:
        return f"{self.path(executor)}/pids/{name}.pid"

    def append(self, node: str, journal: str, entry: dict[str, Any], executor: Executor | None = None) -> None:
        """Append one journal line on ``node`` (before the caller goes on: a kill after this finds it)."""
        where = on_node(executor, "")[0] if executor is not None else self.executor(node)
        node = where.node
        line = json.dumps({"j": journal, **entry}, sort_keys=True)
        path = self.path(where)
        where.run(f"printf '%s\\n' {shlex.quote(line)} >> {path}/journal", timeout=30)
        self._open.setdefault(node, set()).add(journal)

    def closed(self, journal: str, *, clean: bool) -> None:
        """A journal was undone; ``clean`` when every step of it was. Empty directories are removed."""
        for node, journals in list(self._open.items()):
            if journal not in journals:
                continue
            if not clean:
                self._kept.add(node)
                continue
            executor = self.executor(node)
            path = self._paths[node]
            executor.run(f"printf '%s\\n' {shlex.quote(json.dumps({'closed': journal}))} >> {path}/journal", timeout=30)
            journals.discard(journal)
            if not journals and node not in self._kept:
                self._remove(node)

    def finish(self) -> None:
        """End of the run: remove every directory whose journals were all undone."""
        for node in list(self._paths):
            if self._open.get(node) or node in self._kept:
                log_step(node, f"keep {self._paths[node]}: teardown left state behind; the next run's sweep retries")
                continue
            try:
                self._remove(node)
            except DriverError as error:
                log_step(node, f"could not remove {self._paths.get(node)}: {error}")

    def _remove(self, node: str) -> None:
        path = self._paths.pop(node)
        self._open.pop(node, None)
        executor = self.executor(node)
        log_step(node, f"remove run directory {path}")
        executor.run(f"{stop_all_command(path, self.owner.run_id)}; rm -rf {shlex.quote(path)}", timeout=60)


def on_node(executor: Executor, command: str) -> tuple[Executor, str]:
    """The node's own executor and ``command`` as it runs there, for an executor wrapping another
    (a network namespace's: the command is wrapped in ``ip netns exec``)."""
    while hasattr(executor, "inner") and hasattr(executor, "netns"):
        if command:
            command = f"ip netns exec {shlex.quote(executor.netns)} sh -c {shlex.quote(command)}"
        executor = executor.inner
    return executor, command


def _stop_marked(run_id: str, grace_s: float = 5.0) -> str:
    """Shell, with the pid in ``$p``: only if it carries this run's mark, TERM its process group (or
    it), KILL what is left after ``grace_s``, and wait until it is gone."""
    mark = shlex.quote(f"{RUN_ENV}={run_id}")
    ticks = max(1, round(grace_s * 10))
    return (
        f"tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -qxF {mark}"
        " && { kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null;"
        f" for i in $(seq {ticks}); do kill -0 $p 2>/dev/null || break; sleep 0.1; done;"
        " kill -KILL -$p 2>/dev/null || kill -KILL $p 2>/dev/null;"
        " for i in $(seq 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; true; }"
    )


def stop_pidfile_command(pidfile: str, run_id: str, *, grace_s: float = 5.0) -> str:
    """Shell: stop the daemon whose pid is in ``pidfile`` if (and only if) it carries this run's mark."""
    stop = _stop_marked(run_id, grace_s)
    return f'p=$(cat {shlex.quote(pidfile)} 2>/dev/null); [ -z "$p" ] || {{ {stop}; }}; true'


def stop_all_command(path: str, run_id: str) -> str:
    """Shell: stop every marked daemon with a pidfile in the run directory ``path``."""
    pids = shlex.quote(f"{path}/pids")
    return (
        f'for f in {pids}/*.pid; do [ -f "$f" ] || continue; p=$(cat "$f"); [ -n "$p" ] || continue;'
        f" {_stop_marked(run_id)}; done; true"
    )


_default: RunDirs | None = None


def activate(run_dirs: RunDirs | None) -> None:
    """Make ``run_dirs`` the one journals and tools use when none is passed (the session's run)."""
    global _default
    _default = run_dirs


def current() -> RunDirs:
    """The session's run directories, or this process's own when no session set one."""
    global _default
    if _default is None:
        _default = RunDirs()
    return _default


def private_dir(executor: Executor) -> str:
    """This run's private directory on ``executor``'s node, for uploads and tool output."""
    return current().path(executor)
