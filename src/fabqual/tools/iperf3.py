"""iperf3: a one-off server on one node, a client on the other, ``--json`` parsed.

Quirks (fixtures/outputs/iperf3/ holds iperf 3.1.3, 3.9, 3.12 and 3.18 reports):

- With ``--json`` the client exits 0 even when it failed (3.12); the failure is
  only in the report's top-level ``"error"`` key. So the report, not the exit
  status, decides.
- UDP before iperf 3.10 reports only ``end.sum``: the sender's rate with the
  receiver's jitter and loss. There is no received rate, so it is the sender's
  rate times the fraction of datagrams that arrived, and the result says it was
  estimated (``received_estimated``).
- ``retransmits`` exists only where the sender's kernel reports it (Linux
  TCP_INFO); where a platform leaves it out it is unknown (None), never 0.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from typing import Any

from fabqual.drivers.background import serving
from fabqual.errors import ParseError
from fabqual.executors.base import Executor, command_text, log_step
from fabqual.tools._numbers import non_negative, positive
from fabqual.tools.declare import Metric, ToolProbe, ToolSpec

TOOL = "iperf3"

SPEC = ToolSpec(
    TOOL,
    probes=(ToolProbe("iperf3", "iperf3", version="iperf3 --version", minimum=(3, 0)),),
    metrics=(
        Metric("tcp_mbps", "Mb/s", ">=", "TCP rate at the receiver"),
        Metric("udp_mbps", "Mb/s", ">=", "UDP rate at the receiver"),
        Metric("udp_loss_pct", "%", "<=", "UDP datagrams lost"),
        Metric("udp_jitter_ms", "ms", "<=", "UDP jitter at the receiver"),
    ),
    version="iperf3 --version",
)


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
    # True when the report had no receiver rate (UDP before 3.10) and received_bps
    # is the sender's rate times the fraction of datagrams that arrived.
    received_estimated: bool = False

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
    reverse = bool(test.get("reverse"))
    if protocol not in ("TCP", "UDP"):
        raise ParseError(TOOL, f"protocol {protocol!r} is neither TCP nor UDP", output)
    # 3.0-3.9 UDP has only end.sum; everything else has end.sum_sent.
    sent_key = "sum_sent" if protocol == "TCP" or isinstance(end.get("sum_sent"), dict) else "sum"
    sent = _dict(end, sent_key, output)
    common: dict[str, Any] = {
        "protocol": protocol,
        "reverse": reverse,
        "streams": int(test.get("num_streams", 1)),
        "seconds": positive(TOOL, f"end.{sent_key}.seconds", sent.get("seconds"), output),
        "sent_bps": positive(TOOL, f"end.{sent_key}.bits_per_second", sent.get("bits_per_second"), output),
    }
    if protocol == "TCP":
        received = _dict(end, "sum_received", output)
        retransmits = sent.get("retransmits")
        return Iperf3Result(
            **common,
            received_bps=positive(TOOL, "end.sum_received.bits_per_second", received.get("bits_per_second"), output),
            retransmits=None
            if retransmits is None
            else int(non_negative(TOOL, "end.sum_sent.retransmits", retransmits, output)),
            jitter_ms=None,
            lost_packets=None,
            packets=None,
            lost_pct=None,
        )
    # UDP: end.sum carries the receiver's jitter and loss in every release.
    summary = _dict(end, "sum", output)
    lost = int(non_negative(TOOL, "end.sum.lost_packets", summary.get("lost_packets"), output))
    packets = int(positive(TOOL, "end.sum.packets", summary.get("packets"), output))
    if lost > packets:
        raise ParseError(TOOL, f"end.sum.lost_packets {lost} is more than end.sum.packets {packets}", output)
    received_bps, estimated = _udp_received_bps(end, summary, reverse, lost, packets, output)
    return Iperf3Result(
        **common,
        received_bps=received_bps,
        retransmits=None,
        jitter_ms=non_negative(TOOL, "end.sum.jitter_ms", summary.get("jitter_ms"), output),
        lost_packets=lost,
        packets=packets,
        lost_pct=non_negative(TOOL, "end.sum.lost_percent", summary.get("lost_percent"), output),
        received_estimated=estimated,
    )


def _udp_received_bps(
    end: dict[str, Any], summary: dict[str, Any], reverse: bool, lost: int, packets: int, output: str
) -> tuple[float, bool]:
    """The UDP rate at the receiver, and whether it had to be estimated."""
    if isinstance(end.get("sum_received"), dict):  # iperf >= 3.10
        rate = end["sum_received"].get("bits_per_second")
        return positive(TOOL, "end.sum_received.bits_per_second", rate, output), False
    rate = positive(TOOL, "end.sum.bits_per_second", summary.get("bits_per_second"), output)
    # end.sum is the client's own count: the sender's unless the client received (-R);
    # 3.9 says which in "sender", 3.0/3.1 do not.
    client_sent = bool(summary.get("sender", not reverse))
    if not client_sent:
        return rate, False
    if lost == packets:
        raise ParseError(TOOL, f"all {packets} UDP datagrams were lost: nothing arrived", output)
    return rate * (packets - lost) / packets, True


def _dict(parent: dict[str, Any], key: str, output: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict) or not value:
        raise ParseError(TOOL, f"the report has no {key!r} section", output)
    return value


LISTEN_TIMEOUT = 30.0
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
    # -1: the server exits by itself after one test; timeout: at the latest after this limit.
    serve = f"exec timeout {seconds + 60} iperf3 -s -1 --forceflush -p {port}"
    with serving(server, f"iperf3 server port {port}", serve) as process:
        process.wait_for_line("Server listening", timeout=LISTEN_TIMEOUT)  # a client before that is refused
        command = iperf3_client_command(
            address, port, udp=udp, reverse=reverse, seconds=seconds, bitrate=bitrate, streams=streams
        )
        log_step(client.node, f"iperf3 {'UDP' if udp else 'TCP'}{' reverse' if reverse else ''} to {address}")
        result = client.run(command_text(command), timeout=seconds + 60, check=False)
        return parse_iperf3(result.stdout or result.stderr)
