"""iperf3 --json parsing on real reports (captured from iperf 3.9, 3.12, 3.18; published 3.1.3),
and run_iperf3 over loopback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabqual.errors import ParseError
from fabqual.executors.local import LocalExecutor
from fabqual.tools.iperf3 import iperf3_client_command, parse_iperf3, run_iperf3

SAMPLES = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "iperf3"


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
    ("name", "sent", "received", "retransmits"),
    [
        ("v3.9_tcp_loopback.json", 9986181177.9139, 9758977357.124466, 22),
        ("v3.18_tcp_loopback.json", 21118829969.090736, 21114701235.84824, 4),
        ("v3.9_tcp_reverse_loopback.json", 12212514693.45519, 12528181794.924068, 12),
        ("v3.18_tcp_reverse_loopback.json", 19455558399.465908, 19454162404.895348, 70),
    ],
)
def test_tcp_from_older_and_newer_releases(name: str, sent: float, received: float, retransmits: int) -> None:
    """fabqual's TCP client line reads the same on iperf 3.9 and 3.18: receiver's rate, sender's retransmits."""
    result = parse_iperf3(sample(name))
    assert result.protocol == "TCP" and result.reverse == ("reverse" in name)
    assert (result.sent_bps, result.received_bps) == (pytest.approx(sent), pytest.approx(received))
    assert result.retransmits == retransmits and not result.received_estimated


def test_udp_iperf_3_18_has_a_receiver_rate() -> None:
    result = parse_iperf3(sample("v3.18_udp_100M_loopback.json"))
    assert result.received_bps == pytest.approx(100059710.67928667) and not result.received_estimated
    assert result.sent_bps == pytest.approx(100063910.03551833)
    assert (result.jitter_ms, result.lost_packets, result.packets) == (pytest.approx(0.02131055543314475), 0, 764)


@pytest.mark.parametrize(
    ("name", "rate", "jitter", "lost", "packets", "lost_pct"),
    [
        ("v3.9_udp_100M_loopback.json", 100002685.8589924, 0.012713550104340958, 0, 763, 0),
        ("v3.1.3_udp_blocks.json", 834711189.017002, 0.092, 69, 9996, 0.690276),
    ],
)
def test_old_udp_with_only_end_sum_estimates_the_received_rate(
    name: str, rate: float, jitter: float, lost: int, packets: int, lost_pct: float
) -> None:
    """iperf < 3.10 UDP has only end.sum (sender's rate, receiver's loss): the received rate is the
    sender's rate times the delivered fraction, and the result says it was estimated."""
    result = parse_iperf3(sample(name))
    assert result.protocol == "UDP" and result.received_estimated
    assert result.sent_bps == pytest.approx(rate)
    assert result.received_bps == pytest.approx(rate * (packets - lost) / packets)
    assert (result.jitter_ms, result.lost_packets, result.packets, result.lost_pct) == (
        pytest.approx(jitter),
        lost,
        packets,
        pytest.approx(lost_pct),
    )
    assert result.retransmits is None


def test_old_udp_reverse_end_sum_is_already_the_receivers_count() -> None:
    """With -R the client receives: an end.sum marked sender=false is the received rate itself."""
    data = json.loads(sample("v3.9_udp_100M_loopback.json"))
    data["start"]["test_start"]["reverse"] = 1
    data["end"]["sum"]["sender"] = False
    result = parse_iperf3(json.dumps(data))
    assert result.received_bps == pytest.approx(100002685.8589924) and not result.received_estimated


def test_retransmits_left_out_by_a_platform_are_unknown_not_zero() -> None:
    """A sender without TCP_INFO (non-Linux) leaves out retransmits: None, never 0."""
    data = json.loads(sample("v3.9_tcp_loopback.json"))
    del data["end"]["sum_sent"]["retransmits"]
    result = parse_iperf3(json.dumps(data))
    assert result.retransmits is None
    assert result.received_bps == pytest.approx(9758977357.124466)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("all-lost", "all 763 UDP datagrams were lost: nothing arrived"),
        ("more-lost", "end.sum.lost_packets 800 is more than end.sum.packets 763"),
        ("no-sum", "the report has no 'sum' section"),
    ],
)
def test_old_udp_reports_that_measured_nothing_are_errors(edit: str, message: str) -> None:
    data = json.loads(sample("v3.9_udp_100M_loopback.json"))
    if edit == "all-lost":
        data["end"]["sum"]["lost_packets"] = 763
    elif edit == "more-lost":
        data["end"]["sum"]["lost_packets"] = 800
    else:
        del data["end"]["sum"]
    with pytest.raises(ParseError, match=message):
        parse_iperf3(json.dumps(data))


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
    port = 25201 + 2 * udp + reverse  # this test's own port: the check below must not see other iperf3 servers
    result = run_iperf3(
        executor, executor, address="127.0.0.1", udp=udp, reverse=reverse, seconds=1, bitrate="20M", port=port
    )
    assert result.protocol == ("UDP" if udp else "TCP") and result.reverse == reverse
    assert result.received_bps > 0
    left = executor.run(f"pgrep -f 'iperf3 -s -1 --forcefl[u]sh -p {port}$' || true").stdout.strip()
    assert left == ""
