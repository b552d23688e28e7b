"""The one exception tree of fabqual.

Every error a user can see derives from :class:`FabqualError`; its message names
the thing that is wrong, the value, and what to do about it, on one line where
that is possible. Code that catches errors from libraries (paramiko, pyvmomi,
yaml) re-raises them as one of these with ``from``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabqual.executors.base import CommandResult


class FabqualError(Exception):
    """Base of every error fabqual raises on purpose."""


class TopologyError(FabqualError):
    """A topology or thresholds file is malformed: names file, key path and value."""

    def __init__(self, source: str, key_path: str, message: str) -> None:
        self.source = source
        self.key_path = key_path
        self.message = message
        where = f"{source}: {key_path}" if key_path else source
        super().__init__(f"{where}: {message}")


class LabError(FabqualError):
    """The lab (rack or emulated) is broken: a node, device or tool is missing.

    Tests that meet it end as *errors*, not failures: the device under test was
    never reached.
    """


class UnsafeDeviceError(LabError):
    """A declared scratch device is not safe to write (mounted, held, swap, root, or holding signatures).

    The rack offers a device it should not: the lab is wrong, not the device under test.
    """


class NodeUnreachableError(LabError):
    """A node cannot be reached (refused, timed out, wrong key, unknown host key)."""


class CommandError(FabqualError):
    """A command run through an executor exited non-zero.

    Carries the result so callers can look at exit status and output.
    """

    def __init__(self, result: CommandResult, message: str | None = None) -> None:
        self.result = result
        tail = _tail(result.stderr or result.stdout)
        text = message or (
            f"{result.node}: `{result.command}` exited {result.exit_status} after {result.duration:.1f}s"
        )
        super().__init__(f"{text}\n--- output tail ---\n{tail}" if tail else text)


class CommandTimeoutError(FabqualError):
    """A command did not finish within its timeout; carries what it printed so far."""

    def __init__(self, node: str, command: str, timeout: float, output: str) -> None:
        self.node = node
        self.command = command
        self.timeout = timeout
        self.output = output
        tail = _tail(output)
        text = f"{node}: `{command}` timed out after {timeout:.0f}s"
        super().__init__(f"{text}\n--- output tail ---\n{tail}" if tail else text)


class ParseError(FabqualError):
    """A tool's output could not be parsed into the numbers it must contain."""

    def __init__(self, tool: str, message: str, output: str = "") -> None:
        self.tool = tool
        tail = _tail(output)
        text = f"cannot parse {tool} output: {message}"
        super().__init__(f"{text}\n--- output tail ---\n{tail}" if tail else text)


class DriverError(FabqualError):
    """A link driver could not bring up or tear down what it owns."""


class ThresholdError(FabqualError):
    """A thresholds profile is missing a value a test needs."""


class CodecError(FabqualError):
    """Bytes that do not decode as the SCSI or tunnel structure they claim to be."""


def _tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of ``text``, stripped, for error messages."""
    return "\n".join(text.strip().splitlines()[-lines:])
