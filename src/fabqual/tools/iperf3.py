"""iperf3: a one-off server on one node, a client on the other, ``--json`` parsed.

Quirk (iperf 3.12, Debian 12, captured in fixtures/outputs/iperf3/): with
``--json`` the client exits 0 even when it failed; the failure is only in the
report's top-level ``"error"`` key. So the report, not the exit status, decides.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from fabqual.errors import LabError, ParseError
from fabqual.executors.base import Executor, command_text, log_step
from fabqual.tools._numbers import non_negative, positive

TOOL = "iperf3"


@dataclass(frozen=True)
class Iperf3Result:
    """One iperf3 run as the client reported it.

    ``received_bps`` is what arrived at the receiver (the rate a threshold judges);
    ``sent_bps`` what the sender put on the wire. TCP fills ``retransmits``; UDP
    fills jitter and loss, as measured by the receiver.
    """

    protocol: str  # "TCP" or "UDP"
    reverse: bool
    streams: int
    seconds: float
    sent_bps: float
    received_bps: float
    retransmits: int | None
    jitter_ms: float | None
    lost_packets: int | None
    packets: int | None
    lost_pct: float | None

    @property
    def mbps(self) -> float:
        """Received rate in Mb/s (10^6 bit/s), the unit of tcp_mbps/udp_mbps thresholds."""
        return self.received_bps / 1e6


def parse_iperf3(output: str) -> Iperf3Result:
    """Parse an ``iperf3 --json`` client report (TCP or UDP)."""
    try:
        data = json.loads(output)
    except json.JSONDecodeError as error:
        problem = f"{error.msg} at line {error.lineno}"
        raise ParseError(TOOL, f"the JSON report is truncated or malformed ({problem})", output) from None
    if not isinstance(data, dict):
        raise ParseError(TOOL, "the JSON report is not an object", output)
    if data.get("error"):
        raise ParseError(TOOL, f"iperf3 reported an error: {data['error']}", output)
    test = _dict(data, "start", output).get("test_start")
    end = _dict(data, "end", output)
    if not isinstance(test, dict) or "protocol" not in test:
        raise ParseError(TOOL, "start.test_start.protocol is missing", output)
    protocol = str(test["protocol"])
    sent = _dict(end, "sum_sent", output)
    common: dict[str, Any] = {
        "protocol": protocol,
        "reverse": bool(test.get("reverse")),
        "streams": int(test.get("num_streams", 1)),
        "seconds": positive(TOOL, "end.sum_sent.seconds", sent.get("seconds"), output),
        "sent_bps": positive(TOOL, "end.sum_sent.bits_per_second", sent.get("bits_per_second"), output),
    }
    if protocol == "TCP":
        received = _dict(end, "sum_received", output)
        return Iperf3Result(
            **common,
            received_bps=positive(TOOL, "end.sum_received.bits_per_second", received.get("bits_per_second"), output),
            retransmits=int(non_negative(TOOL, "end.sum_sent.retransmits", sent.get("retransmits", 0), output)),
            jitter_ms=None,
            lost_packets=None,
            packets=None,
            lost_pct=None,
        )
    if protocol == "UDP":
        # 3.12 has end.sum (receiver's jitter/loss, sender's rate) and sum_received;
        # older releases only end.sum.
        summary = _dict(end, "sum", output)
        arrived = end["sum_received"] if isinstance(end.get("sum_received"), dict) else summary
        return Iperf3Result(
            **common,
            received_bps=positive(TOOL, "end.sum_received.bits_per_second", arrived.get("bits_per_second"), output),
            retransmits=None,
            jitter_ms=non_negative(TOOL, "end.sum.jitter_ms", summary.get("jitter_ms"), output),
            lost_packets=int(non_negative(TOOL, "end.sum.lost_packets", summary.get("lost_packets"), output)),
            packets=int(positive(TOOL, "end.sum.packets", summary.get("packets"), output)),
            lost_pct=non_negative(TOOL, "end.sum.lost_percent", summary.get("lost_percent"), output),
        )
    raise ParseError(TOOL, f"protocol {protocol!r} is neither TCP nor UDP", output)


def _dict(parent: dict[str, Any], key: str, output: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict) or not value:
        raise ParseError(TOOL, f"the report has no {key!r} section", output)
    return value


# A fresh port per run, so a server left over from an interrupted run cannot answer.
_ports = itertools.count(5301 + os.getpid() % 500)


def iperf3_client_command(
    address: str,
    port: int,
    *,
    udp: bool = False,
    reverse: bool = False,
    seconds: int,
    bitrate: str | None = None,
    streams: int = 1,
) -> list[str]:
    """The exact client command line. ``bitrate`` is iperf3's ``-b`` (e.g. ``"100M"``)."""
    command = ["iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-P", str(streams), "--json"]
    if udp:
        command.append("-u")
    if bitrate is not None:
        command += ["-b", bitrate]
    if reverse:
        command.append("-R")
    return command


def run_iperf3(
    server: Executor,
    client: Executor,
    *,
    address: str,
    udp: bool = False,
    reverse: bool = False,
    seconds: int,
    bitrate: str | None = None,
    streams: int = 1,
    port: int | None = None,
) -> Iperf3Result:
    """Serve once on ``server``, measure from ``client`` to ``address``; the server is
    always stopped afterwards, also when the client fails."""
    port = port if port is not None else next(_ports)
    log_file = f"/tmp/fabqual-iperf3-{port}.log"
    limit = seconds + 60  # the server exits by itself after one test (-1) or at this limit
    log_step(server.node, f"start iperf3 server on port {port}")
    started = server.run(
        f"nohup timeout {limit} iperf3 -s -1 --forceflush -p {port} > {log_file} 2>&1 < /dev/null & echo $!", timeout=30
    )
    pid = started.stdout.strip()
    try:
        _wait_listening(server, log_file, port)
        command = iperf3_client_command(
            address, port, udp=udp, reverse=reverse, seconds=seconds, bitrate=bitrate, streams=streams
        )
        log_step(client.node, f"iperf3 {'UDP' if udp else 'TCP'}{' reverse' if reverse else ''} to {address}")
        result = client.run(command_text(command), timeout=seconds + 60, check=False)
        return parse_iperf3(result.stdout or result.stderr)
    finally:
        server.run(f"kill {pid} 2>/dev/null; rm -f {log_file}", timeout=30, check=False)


def _wait_listening(server: Executor, log_file: str, port: int, within: float = 15.0) -> None:
    """Wait for the server's "Server listening" line: a client started earlier is refused."""
    deadline = time.monotonic() + within
    while True:
        log = server.run(f"cat {log_file}", timeout=30, check=False).stdout
        if "Server listening" in log:
            return
        if time.monotonic() > deadline or "error" in log:
            raise LabError(f"{server.node}: iperf3 server on port {port} did not start listening: {log.strip()[-300:]}")
        time.sleep(0.2)
