"""Fabric counters: sysfs dumps of real ports parsed, rises computed, the error ones told from traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.errors import ParseError
from fabqual.tools.fabric_counters import CounterSet, error_rises, is_error_counter, parse_counter_dump, rises

SYSFS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "sysfs"
RXE = "/sys/class/infiniband/rxe0/ports/1/hw_counters"


def test_rxe_hw_counters_of_a_guest() -> None:
    """Every rxe hw_counter of the 6.1 guest is read, decimal."""
    values = parse_counter_dump((SYSFS / "rxe0_hw_counters_ini.txt").read_text(), RXE)
    assert {"sent_pkts", "rcvd_pkts", "out_of_seq_request", "retry_exceeded_err", "duplicate_request"} <= set(values)
    assert values["sent_pkts"] > 0


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("out_of_seq_request", True),
        ("retry_exceeded_err", True),
        ("duplicate_request", True),
        ("rcvd_rnr_err", True),
        ("link_downed", True),
        ("np_cnp_sent", True),
        ("invalid_crc_count", True),
        ("loss_of_sync_count", True),
        ("link_failure_count", True),
        ("sent_pkts", False),
        ("rcvd_pkts", False),
        ("rdma_sends", False),
        ("lifespan", False),
        ("ack_deferred", False),
        ("tx_frames", False),
        ("seconds_since_last_reset", False),
    ],
)
def test_error_counters_by_name(name: str, error: bool) -> None:
    assert is_error_counter(name) is error


def test_fc_statistics_hex_and_not_kept() -> None:
    """fc_host statistics are hexadecimal; all-ones is a counter the HBA does not keep: left out, not a number."""
    directory = "/sys/class/fc_host/host0/statistics"
    text = (SYSFS.parent / "fcoe" / "fc_host_statistics_tgt.txt").read_text()
    values = parse_counter_dump(text, directory)
    assert values["link_failure_count"] == 0 and values["invalid_crc_count"] == 0
    assert values["seconds_since_last_reset"] == 8
    assert "loss_of_sync_count" not in values and "dumped_frames" not in values  # libfc keeps no such count
    dump = f"{directory}/tx_frames:0x10\n{directory}/lip_count:0xffffffffffffffff\n"
    assert parse_counter_dump(dump, directory) == {"tx_frames": 16}


def test_rises_and_a_reset_counter() -> None:
    before = CounterSet("ini rxe0/1", {"sent_pkts": 10, "out_of_seq_request": 2, "send_err": 5})
    after = CounterSet("ini rxe0/1", {"sent_pkts": 50, "out_of_seq_request": 3, "send_err": 1})
    assert rises(before, after) == {"sent_pkts": 40, "out_of_seq_request": 1, "send_err": 1}
    assert error_rises(before, after) == {"out_of_seq_request": 1, "send_err": 1}


def test_a_dump_of_another_directory_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="NAME:VALUE"):
        parse_counter_dump("/sys/class/net/eth1/statistics/rx_errors:0\n", RXE)
    with pytest.raises(ParseError, match="NAME:VALUE"):
        parse_counter_dump("garbage\n", RXE)
