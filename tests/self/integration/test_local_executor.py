"""The local executor: real subprocesses through /bin/sh on this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fabqual.errors import CommandError, CommandTimeoutError
from fabqual.executors import Executor, LocalExecutor
from fabqual.executors.child import end_child
from tests.self.integration.test_ssh_executor import processes_with


def test_local_executor_satisfies_the_executor_protocol() -> None:
    """LocalExecutor is usable wherever an Executor is expected."""
    assert isinstance(LocalExecutor("me"), Executor)


def test_run_returns_result_with_separate_streams() -> None:
    """stdout, stderr, exit status, node, command text and duration come back unmixed."""
    result = LocalExecutor("me").run("echo out; echo err >&2")
    assert (result.node, result.command, result.exit_status) == ("me", "echo out; echo err >&2", 0)
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert 0 < result.duration < 30


def test_argument_list_is_quoted() -> None:
    """An argv list arrives argument by argument: spaces, quotes and $ are not interpreted."""
    result = LocalExecutor().run(["printf", "%s|", "a b", "it's", "$HOME"])
    assert result.stdout == "a b|it's|$HOME|"


def test_stdin_is_fed() -> None:
    """stdin text reaches the command, and is closed so readers finish."""
    assert LocalExecutor().run("wc -l", stdin="a\nb\n").stdout.strip() == "2"


def test_nonzero_exit_raises_with_tail() -> None:
    """A non-zero exit raises CommandError carrying the result, the message has the command and output tail."""
    with pytest.raises(CommandError) as caught:
        LocalExecutor("me").run("echo 'boom: no such device' >&2; exit 5")
    assert caught.value.result.exit_status == 5
    text = str(caught.value)
    assert "me: `echo 'boom: no such device' >&2; exit 5` exited 5" in text
    assert "boom: no such device" in text.split("--- output tail ---")[1]


def test_check_false_returns_the_failure() -> None:
    """With check=False a failing command returns its result."""
    result = LocalExecutor().run("echo partial; exit 4", check=False)
    assert (result.exit_status, result.stdout, result.ok) == (4, "partial\n", False)


def test_timeout_raises_on_time_with_output_so_far() -> None:
    """A command running past its timeout raises CommandTimeoutError after ~timeout, with what it printed."""
    start = time.monotonic()
    with pytest.raises(CommandTimeoutError) as caught:
        LocalExecutor("me").run("echo started; sleep 30; echo never", timeout=1)
    assert time.monotonic() - start < 10
    assert caught.value.output.strip() == "started"
    assert str(caught.value).startswith("me: `echo started; sleep 30; echo never` timed out after 1s")


def test_timeout_kills_the_commands_children() -> None:
    """After a timeout no process of the command is left (the SSH executor kills the whole process group)."""
    marker = "sleep 4343.5"
    with pytest.raises(CommandTimeoutError):
        LocalExecutor().run(f"echo started; {marker}; echo never", timeout=1)
    deadline = time.monotonic() + 3
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover = processes_with(marker)
    for pid in leftover:  # do not leave the orphan behind while the fix is pending
        os.kill(pid, 9)
    assert leftover == []


def test_put_and_get_copy_files(tmp_path: Path) -> None:
    """put and get copy bytes exactly on the local machine."""
    src = tmp_path / "a.bin"
    src.write_bytes(bytes(range(256)))
    executor = LocalExecutor()
    executor.put(src, str(tmp_path / "b.bin"))
    executor.get(str(tmp_path / "b.bin"), tmp_path / "c.bin")
    assert (tmp_path / "c.bin").read_bytes() == bytes(range(256))


def test_end_child_asks_first_and_reaps() -> None:
    """A child that honours SIGTERM ends on it, reaped, with the signal as its status."""
    child = subprocess.Popen(["sleep", "600"])
    assert end_child(child, grace_s=10) == -signal.SIGTERM
    assert child.returncode == -signal.SIGTERM


def test_end_child_kills_what_ignores_the_signal() -> None:
    """A child that ignores SIGTERM is SIGKILLed after the grace period, and reaped."""
    child = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"], stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    start = time.monotonic()
    assert end_child(child, grace_s=0.5) == -signal.SIGKILL
    assert 0.4 < time.monotonic() - start < 10
    child.stdout.close()
