"""An executor whose commands run inside a network namespace of another executor's node."""

from __future__ import annotations

import shlex
from pathlib import Path

from fabqual.executors.base import Command, CommandResult, Executor, command_text


class NetnsExecutor:
    """An executor whose commands run inside a network namespace of another executor's node."""

    def __init__(self, inner: Executor, netns: str) -> None:
        self.inner = inner
        self.netns = netns
        self.node = f"{inner.node}[{netns}]"

    def run(
        self, command: Command, *, timeout: float = 60.0, check: bool = True, stdin: str | None = None
    ) -> CommandResult:
        wrapped = f"ip netns exec {shlex.quote(self.netns)} sh -c {shlex.quote(command_text(command))}"
        return self.inner.run(wrapped, timeout=timeout, check=check, stdin=stdin)

    def put(self, local: Path, remote: str) -> None:
        self.inner.put(local, remote)

    def get(self, remote: str, local: Path) -> None:
        self.inner.get(remote, local)

    def close(self) -> None:
        """The inner executor belongs to the session; nothing to release here."""
