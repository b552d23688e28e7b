"""Run commands on the machine fabqual itself runs on."""

from __future__ import annotations

import os
import shutil
import signal
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
        # Its own process group, so a timeout kills everything the command started.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", text],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise CommandTimeoutError(self.node, text, timeout, (out or "") + (err or "")) from None
        result = CommandResult(self.node, text, proc.returncode, out, err, time.monotonic() - start)
        if check and not result.ok:
            raise CommandError(result)
        return result

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def close(self) -> None:
        """Nothing to release."""
