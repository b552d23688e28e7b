"""Run commands on the machine fabqual itself runs on."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from fabqual.errors import CommandError, CommandTimeoutError
from fabqual.executors.base import Command, CommandResult, command_text


class LocalExecutor:
    """Executor for the local machine, through ``/bin/sh -c``."""

    def __init__(self, node: str = "localhost") -> None:
        self.node = node

    def run(
        self,
        command: Command,
        *,
        timeout: float = 60.0,
        check: bool = True,
        stdin: str | None = None,
    ) -> CommandResult:
        text = command_text(command)
        start = time.monotonic()
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", text],
                input=stdin,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            output = _decode(expired.stdout) + _decode(expired.stderr)
            raise CommandTimeoutError(self.node, text, timeout, output) from None
        result = CommandResult(self.node, text, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        if check and not result.ok:
            raise CommandError(result)
        return result

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def close(self) -> None:
        """Nothing to release."""


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
