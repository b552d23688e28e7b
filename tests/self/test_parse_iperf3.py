"""iperf3 --json parsing on real captures (iperf 3.12), and run_iperf3 over loopback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabqual.errors import ParseError
from fabqual.executors.local import LocalExecutor
from fabqual.tools.iperf3 import iperf3_client_command, parse_iperf3, run_iperf3

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "outputs" / "iperf3"


def sample(name: str) -> str:
    assert (SAMPLES / f"{name}.origin").is_file(), f"{name} has no .origin file"
    return (SAMPLES / name).read_text()


def test_tcp() -> None:
    result = parse_iperf3(sample("tcp_loopback.json"))
    assert result.protocol == "TCP" and not result.reverse and result.streams == 1
    assert result.sent_bps == pytest.approx(22295129183.20689)
    assert result.received_bps == pytest.approx(22255605498.56778)
    assert result.mbps == pytest.approx(22255.60549856778)
    assert result.retransmits == 2
    assert result.jitter_ms is None and result.lost_pct is None


def test_tcp_reverse() -> None:
    result = parse_iperf3(sample("tcp_reverse_loopback.json"))
    assert result.reverse
    assert result.received_bps == pytest.approx(19456423926.673615)
    assert result.retransmits == 0


def test_udp_uses_the_receivers_rate_jitter_and_loss() -> None:
    result = parse_iperf3(sample("udp_100M_loopback.json"))
    assert result.protocol == "UDP"
    assert result.sent_bps == pytest.approx(100004185.8430309)
    assert result.received_bps == pytest.approx(98912969.81715575)
    assert result.jitter_ms == pytest.approx(0.010092968793285691)
    assert result.lost_pct == pytest.approx(1.0484927916120577)
    assert result.retransmits is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_server.json", "iperf3 reported an error: unable to connect to server: Connection refused"),
        ("server_busy.json", "iperf3 reported an error: the server is busy running a test. try again later"),
    ],
)
def test_top_level_error_key_is_an_error(name: str, message: str) -> None:
    """iperf 3.12 exits 0 with --json on failure: only the "error" key tells."""
    with pytest.raises(ParseError, match=message):
        parse_iperf3(sample(name))


def _edited(edit: str) -> str:
    data = json.loads(sample("tcp_loopback.json"))
    if edit == "zero":
        data["end"]["sum_received"]["bits_per_second"] = 0
    elif edit == "no-end":
        data["end"] = {}
    elif edit == "string":
        data["end"]["sum_sent"]["bits_per_second"] = "fast"
    return json.dumps(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("zero", "end.sum_received.bits_per_second is 0: nothing was measured"),
        ("no-end", "the report has no 'end' section"),
        ("string", "end.sum_sent.bits_per_second is 'fast', not a number"),
    ],
)
def test_zero_missing_or_garbled_numbers_are_errors(edit: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_iperf3(_edited(edit))


def test_truncated_report_is_rejected() -> None:
    text = sample("udp_100M_loopback.json")
    with pytest.raises(ParseError, match="truncated or malformed"):
        parse_iperf3(text[:-200])


def test_client_command() -> None:
    assert iperf3_client_command("10.0.0.1", 5301, udp=True, reverse=True, seconds=10, bitrate="100M") == [
        "iperf3",
        "-c",
        "10.0.0.1",
        "-p",
        "5301",
        "-t",
        "10",
        "-P",
        "1",
        "--json",
        "-u",
        "-b",
        "100M",
        "-R",
    ]


needs_iperf3 = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed on this machine")


@needs_iperf3
@pytest.mark.parametrize(("udp", "reverse"), [(False, False), (True, True)], ids=["tcp", "udp-reverse"])
def test_run_iperf3_loopback(udp: bool, reverse: bool) -> None:
    """A real one-off server and client on 127.0.0.1; the server is gone afterwards."""
    executor = LocalExecutor()
    result = run_iperf3(executor, executor, address="127.0.0.1", udp=udp, reverse=reverse, seconds=1, bitrate="20M")
    assert result.protocol == ("UDP" if udp else "TCP") and result.reverse == reverse
    assert result.received_bps > 0
    left = executor.run("pgrep -f 'iperf3 -s -1 --forcefl[u]sh' || true").stdout.strip()
    assert left == ""
