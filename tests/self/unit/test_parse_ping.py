"""ping (iputils 20221126; 20210202 and 20240905 of Debian 11 and 13 at the end) parsing on real captures,
and run_ping on this machine.

Samples under fixtures/outputs/ping/ were captured on the dev host; each
``.origin`` file holds the exact command (the no-answer ones in a fresh netns).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabqual.errors import ParseError
from fabqual.executors.local import LocalExecutor
from fabqual.tools.ping import parse_ping, ping_command, run_ping

SAMPLES = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "ping"


def sample(name: str) -> str:
    assert (SAMPLES / f"{name}.origin").is_file(), f"{name} has no .origin file"
    return (SAMPLES / name).read_text()


def test_loopback_ok() -> None:
    result = parse_ping(sample("loopback_ok.txt"))
    assert (result.transmitted, result.received, result.errors) == (5, 5, 0)
    assert result.loss_pct == 0.0
    assert (result.rtt_min_ms, result.rtt_avg_ms, result.rtt_max_ms, result.rtt_mdev_ms) == (0.040, 0.054, 0.090, 0.018)


def test_jumbo_without_trailing_newline() -> None:
    result = parse_ping(sample("loopback_jumbo.txt"))
    assert (result.transmitted, result.received) == (3, 3)
    assert result.rtt_avg_ms == 0.047


@pytest.mark.parametrize(("name", "sent", "errors"), [("no_answer.txt", 3, 0), ("no_answer_errors.txt", 5, 3)])
def test_total_loss_is_a_result_not_an_error(name: str, sent: int, errors: int) -> None:
    """100% loss parses as loss 100 with no RTT: a valid result that fails its threshold."""
    result = parse_ping(sample(name))
    assert (result.transmitted, result.received, result.errors) == (sent, 0, errors)
    assert result.loss_pct == 100.0
    assert result.rtt_avg_ms is None and result.rtt_max_ms is None


def test_no_statistics_at_all_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no 'packets transmitted' statistics line") as caught:
        parse_ping(sample("unreachable.txt"))
    assert "Network is unreachable" in str(caught.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.split("rtt min")[0], "5 packets received but no rtt min/avg/max line"),
        (lambda t: t.replace("5 packets transmitted, 5 received", "0 packets transmitted, 0 received"), "0 packets"),
        (lambda t: t.replace("0.040/0.054", "0.000/0.000"), "rtt min is 0: nothing was measured"),
        (lambda t: t[:40], "no 'packets transmitted'"),
    ],
    ids=["no-rtt-line", "nothing-sent", "zero-rtt", "truncated"],
)
def test_truncated_or_zero_outputs_are_rejected(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parse_ping(edit(sample("loopback_ok.txt")))


def test_busybox_round_trip_form() -> None:
    text = "3 packets transmitted, 3 packets received, 0% packet loss\nround-trip min/avg/max = 0.1/0.2/0.3 ms\n"
    with pytest.raises(ParseError):  # BusyBox says "3 packets received": not iputils, not guessed at
        parse_ping(text)
    text = "3 packets transmitted, 3 received, 0% packet loss\nround-trip min/avg/max = 0.1/0.2/0.3 ms\n"
    result = parse_ping(text)
    assert result.rtt_avg_ms == 0.2 and result.rtt_mdev_ms is None


def test_command_with_size_sets_dont_fragment() -> None:
    assert ping_command("10.0.0.2", 10, 0.2, 8972) == [
        "ping",
        "-n",
        "-c",
        "10",
        "-i",
        "0.2",
        "-W",
        "2",
        "-s",
        "8972",
        "-M",
        "do",
        "10.0.0.2",
    ]


@pytest.mark.skipif(shutil.which("ping") is None, reason="iputils ping is not installed on this machine")
def test_run_ping_loopback() -> None:
    result = run_ping(LocalExecutor(), "127.0.0.1", 3, 0.2, size=1472)
    assert result.received == 3 and result.loss_pct == 0 and result.rtt_avg_ms is not None


@pytest.mark.parametrize(
    ("name", "sent", "received", "rtt"),
    [
        ("v20210202_ok.txt", 5, 5, (0.022, 0.101, 0.377, 0.137)),
        ("v20210202_jumbo.txt", 5, 5, (0.014, 0.020, 0.026, 0.004)),
        ("v20210202_noarp.txt", 3, 0, (None, None, None, None)),
        ("v20240905_ok.txt", 5, 5, (0.014, 0.032, 0.061, 0.016)),
        ("v20240905_jumbo.txt", 5, 5, (0.022, 0.039, 0.054, 0.012)),
        ("v20240905_noarp.txt", 3, 0, (None, None, None, None)),
    ],
)
def test_iputils_of_debian_11_and_13(name: str, sent: int, received: int, rtt: tuple[float | None, ...]) -> None:
    """fabqual's ping lines read the same on iputils 20210202 and 20240905; with nothing back the
    round-trip times are unknown (None), not 0, and the loss is 100 %."""
    result = parse_ping(sample(name))
    assert (result.transmitted, result.received, result.errors) == (sent, received, 0)
    assert result.loss_pct == (0.0 if received else 100.0)
    assert (result.rtt_min_ms, result.rtt_avg_ms, result.rtt_max_ms, result.rtt_mdev_ms) == rtt


@pytest.mark.parametrize("name", ["v20210202_unreachable.txt", "v20240905_unreachable.txt"])
def test_no_route_of_debian_11_and_13_is_a_parse_error_quoting_ping(name: str) -> None:
    with pytest.raises(ParseError, match="no 'packets transmitted' statistics line") as caught:
        parse_ping(sample(name))
    assert "ping: connect: Network is unreachable" in str(caught.value)
