"""The executor contract: run a command on a node, get a frozen result.

Every backend (local subprocess, SSH) implements :class:`Executor`. A non-zero
exit raises :class:`~fabqual.errors.CommandError` unless ``check=False``; a
timeout always raises :class:`~fabqual.errors.CommandTimeoutError`.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

log = logging.getLogger("fabqual.steps")


@dataclass(frozen=True)
class CommandResult:
    """What one command did on one node."""

    node: str
    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


Command = str | Sequence[str]


def command_text(command: Command) -> str:
    """A command as one shell line; argument lists are quoted safely."""
    if isinstance(command, str):
        return command
    return shlex.join(str(part) for part in command)


@runtime_checkable
class Executor(Protocol):
    """Runs commands and moves files on one node."""

    node: str

    def run(
        self,
        command: Command,
        *,
        timeout: float = 60.0,
        check: bool = True,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run ``command`` through a shell on the node and wait for it."""
        ...

    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` on the node."""
        ...

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` from the node to a local file."""
        ...

    def close(self) -> None:
        """Release connections; the executor may be used again (it reconnects)."""
        ...


def log_step(node: str, what: str) -> None:
    """Record a lab-changing action so a failed run reads as a timeline."""
    log.info("[%s] %s", node, what)
