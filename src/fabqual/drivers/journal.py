"""A driver's record of what it changed on nodes, undone in reverse order.

Every lab-changing step a driver takes is logged and, when it has an undo, put
in the journal. Teardown walks the journal backwards and keeps going past
failures (one stuck step must not leave the rest behind), then reports every
step it could not undo in one error.
"""

from __future__ import annotations

import itertools
import os
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fabqual.drivers import rundir
from fabqual.drivers.rundir import RunDirs
from fabqual.errors import DriverError, FabqualError
from fabqual.executors.base import Executor, log_step

Undo = Callable[[], None]
_journal_ids = itertools.count(1)


@dataclass
class Entry:
    node: str
    what: str
    undo: Undo
    done: bool = False
    number: int = 0  # its line in the node's journal file


class Journal:
    """What was created, on which node, and how to remove it.

    Each step is also appended, as a replayable shell command, to the run's
    journal file on its node (:mod:`fabqual.drivers.rundir`): if this process is
    killed, a later run's sweep replays what it did not undo.
    """

    def __init__(self, run_dirs: RunDirs | None = None) -> None:
        self._entries: list[Entry] = []
        self._run_dirs = run_dirs
        self.id = f"{os.getpid()}.{next(_journal_ids)}"

    @property
    def run_dirs(self) -> RunDirs:
        return self._run_dirs or rundir.current()

    def __len__(self) -> int:
        return sum(1 for entry in self._entries if not entry.done)

    def record(
        self, node: str, what: str, undo: Undo, *, replay: str | None = None, executor: Executor | None = None
    ) -> Entry:
        """Journal ``undo``; ``replay`` is the same undo as one shell command on the node, for a later process.

        A step with no shell form (``replay`` None) is still written down, so a
        sweep can say what it could not undo.
        """
        entry = Entry(node, what, undo, number=len(self._entries) + 1)
        self._entries.append(entry)
        if executor is not None or node in self.run_dirs.known_nodes():
            self.run_dirs.append(node, self.id, {"n": entry.number, "what": what, "undo": replay}, executor)
        return entry

    def record_command(self, executor: Executor, what: str, command: str, *, timeout: float = 60.0) -> Entry:
        """Record an undo that is one shell command on ``executor``'s node."""

        def undo() -> None:
            executor.run(command, timeout=timeout)

        return self.record(executor.node, what, undo, replay=rundir.on_node(executor, command)[1], executor=executor)

    @contextmanager
    def ahead(self, executor: Executor, what: str, command: str) -> Iterator[Entry]:
        """Journal the undo ``command`` *before* the change in the ``with`` body is made.

        A process killed while the change runs then leaves a journal line that
        removes it. A change that fails (:class:`FabqualError`) made nothing: its
        entry is dropped, also on disk, so neither teardown nor a sweep touches
        an object of that name that someone else owns. Only for changes whose
        undo is harmless when the change never happened.
        """
        entry = self.record_command(executor, what, command)
        try:
            yield entry
        except FabqualError:
            entry.done = True
            self.run_dirs.append(entry.node, self.id, {"void": entry.number}, executor)
            raise

    def undo_all(self) -> None:
        """Undo every entry, newest first; raise once at the end if some could not be undone."""
        failures: list[str] = []
        for entry in reversed(self._entries):
            if entry.done:
                continue
            log_step(entry.node, f"remove {entry.what}")
            try:
                entry.undo()
            except FabqualError as error:
                first = str(error).splitlines()
                failures.append(f"{entry.node}: could not remove {entry.what}: {' | '.join(first[-3:])}")
            entry.done = True
        recorded = bool(self._entries)
        self._entries.clear()
        if recorded:
            try:
                self.run_dirs.closed(self.id, clean=not failures)
            except FabqualError as error:
                failures.append(f"could not close the run's journal on the nodes: {error}")
            self.id = f"{os.getpid()}.{next(_journal_ids)}"  # steps recorded after this are a new, open journal
        if failures:
            raise DriverError("teardown left state behind:\n  " + "\n  ".join(failures))


def write(executor: Executor, path: str, value: str, *, timeout: float = 60.0) -> None:
    """Write ``value`` to a sysfs/configfs attribute, naming the file if the kernel refuses."""
    log_step(executor.node, f"write {value!r} to {path}")
    result = executor.run(f"echo {shlex.quote(value)} > {shlex.quote(path)}", timeout=timeout, check=False)
    if not result.ok:
        reason = (result.stderr or result.stdout).strip().splitlines()
        why = reason[-1] if reason else f"exit {result.exit_status}"
        raise DriverError(f"{executor.node}: the kernel refused {value!r} written to {path}: {why}")


def sh(executor: Executor, command: str, *, timeout: float = 60.0) -> str:
    """Run one configfs/sysfs step; a refusal names the command and the kernel's reason."""
    result = executor.run(command, timeout=timeout, check=False)
    if not result.ok:
        why = (result.stderr or result.stdout).strip() or f"exit {result.exit_status}"
        raise DriverError(f"{executor.node}: `{command}` failed: {why}")
    return result.stdout


def read(executor: Executor, path: str) -> str:
    return executor.run(f"cat {shlex.quote(path)}", timeout=30).stdout.strip()


def exists(executor: Executor, path: str) -> bool:
    return executor.run(f"test -e {shlex.quote(path)}", timeout=30, check=False).ok


def modprobe(executor: Executor, *modules: str) -> None:
    """Load kernel modules; a missing module is a broken lab, named with what to install."""
    for module in modules:
        result = executor.run(f"modprobe {shlex.quote(module)}", timeout=120, check=False)
        if not result.ok:
            from fabqual.errors import LabError

            raise LabError(
                f"{executor.node}: kernel module {module} cannot be loaded"
                f" ({result.stderr.strip() or result.exit_status});"
                " install it for the running kernel or run `fabqual doctor`"
            )
