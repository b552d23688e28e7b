"""A driver's record of what it changed on nodes, undone in reverse order.

Every lab-changing step a driver takes is logged and, when it has an undo, put
in the journal. Teardown walks the journal backwards and keeps going past
failures (one stuck step must not leave the rest behind), then reports every
step it could not undo in one error.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from fabqual.errors import DriverError, FabqualError
from fabqual.executors.base import Executor, log_step

Undo = Callable[[], None]


@dataclass
class Entry:
    node: str
    what: str
    undo: Undo
    done: bool = False


class Journal:
    """What was created, on which node, and how to remove it."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []

    def __len__(self) -> int:
        return sum(1 for entry in self._entries if not entry.done)

    def record(self, node: str, what: str, undo: Undo) -> Entry:
        entry = Entry(node, what, undo)
        self._entries.append(entry)
        return entry

    def record_command(self, executor: Executor, what: str, command: str, *, timeout: float = 60.0) -> Entry:
        """Record an undo that is one shell command on ``executor``'s node."""

        def undo() -> None:
            executor.run(command, timeout=timeout)

        return self.record(executor.node, what, undo)

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
        self._entries.clear()
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
