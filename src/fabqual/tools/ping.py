"""ping (iputils): run it on a node and parse its summary.

``100% packet loss`` with no rtt line is a valid result (loss 100, no RTT) that
fails its thresholds; output without a statistics line at all (``connect:
Network is unreachable``, a truncated capture) is a ParseError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fabqual.errors import ParseError
from fabqual.executors.base import Executor, command_text, log_step
from fabqual.tools._numbers import non_negative, positive
from fabqual.tools.declare import Metric, ToolProbe, ToolSpec

TOOL = "ping"

SPEC = ToolSpec(
    TOOL,
    probes=(ToolProbe("ping", "iputils-ping"),),
    metrics=(
        Metric("loss_pct", "%", "<=", "echo requests without a reply"),
        Metric("rtt_avg_ms", "ms", "<=", "average round-trip time"),
        Metric("rtt_max_ms", "ms", "<=", "largest round-trip time"),
    ),
)

_SUMMARY = re.compile(
    r"^(\d+) packets transmitted, (\d+) received(?:, \+(\d+) duplicates)?(?:, \+(\d+) errors)?,"
    r" ([\d.]+)% packet loss(?:, time (\d+)ms)?",
    re.MULTILINE,
)
# iputils prints "rtt"; BusyBox and older iputils "round-trip" (without mdev).
_RTT = re.compile(
    r"^(?:rtt|round-trip) min/avg/max(?:/mdev)? = ([\d.]+)/([\d.]+)/([\d.]+)(?:/([\d.]+))? ms", re.MULTILINE
)


@dataclass(frozen=True)
class PingResult:
    """One ping run: counts, loss and round-trip times (None when nothing came back)."""

    transmitted: int
    received: int
    errors: int
    loss_pct: float
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    rtt_mdev_ms: float | None


def parse_ping(output: str) -> PingResult:
    """Parse the statistics block of an iputils ping run."""
    summary = _SUMMARY.search(output)
    if summary is None:
        raise ParseError(TOOL, "no 'packets transmitted' statistics line", output)
    transmitted, received = int(summary[1]), int(summary[2])
    errors = int(summary[4] or 0)
    if transmitted == 0:
        raise ParseError(TOOL, "0 packets transmitted: nothing was measured", output)
    loss = non_negative(TOOL, "packet loss", summary[5], output)
    rtt = _RTT.search(output)
    if received == 0:
        if rtt is not None:
            raise ParseError(TOOL, "an rtt line although 0 packets were received", output)
        return PingResult(transmitted, received, errors, loss, None, None, None, None)
    if rtt is None:
        raise ParseError(TOOL, f"{received} packets received but no rtt min/avg/max line", output)
    return PingResult(
        transmitted=transmitted,
        received=received,
        errors=errors,
        loss_pct=loss,
        rtt_min_ms=positive(TOOL, "rtt min", rtt[1], output),
        rtt_avg_ms=positive(TOOL, "rtt avg", rtt[2], output),
        rtt_max_ms=positive(TOOL, "rtt max", rtt[3], output),
        rtt_mdev_ms=non_negative(TOOL, "rtt mdev", rtt[4], output) if rtt[4] is not None else None,
    )


def ping_command(
    address: str, count: int, interval: float, size: int | None = None, *, source: str | None = None
) -> list[str]:
    """The exact ping command line: ``size`` also sets don't-fragment, so it proves the MTU."""
    command = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "2"]
    if source is not None:
        command += ["-I", source]
    if size is not None:
        command += ["-s", str(size), "-M", "do"]
    return [*command, address]


def run_ping(
    executor: Executor,
    address: str,
    count: int,
    interval: float,
    size: int | None = None,
    *,
    source: str | None = None,
) -> PingResult:
    """Ping ``address`` from the executor's node; packet loss is a result, not an error."""
    command = ping_command(address, count, interval, size, source=source)
    log_step(executor.node, f"ping {address} x{count}" + (f" size {size} DF" if size else ""))
    # ping exits 1 on loss and 2 on other errors; the parser decides what the output means.
    result = executor.run(command_text(command), timeout=count * interval + 30, check=False)
    return parse_ping(result.stdout + result.stderr)
