"""The host's failed reconnect attempts read from dmesg, on real kernel logs (fixtures/outputs/kernel-log/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.conformance.reconnects import intervals, reconnect_failures
from fabqual.errors import ParseError

LOGS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "kernel-log"


def test_fc_attempts_of_the_lost_controller_every_reconnect_delay() -> None:
    """nvme-fc logs 'Reconnect attempt failed' per attempt: 8 for ctrl_loss_tmo 16 / reconnect_delay 2."""
    text = (LOGS / "dmesg_fc_timers_tgt.txt").read_text()
    loss = reconnect_failures(text, "nvme1", since=1006.0)
    assert len(loss) == 8
    assert all(1.9 < gap < 2.5 for gap in intervals(loss))
    recovery = [t for t in reconnect_failures(text, "nvme1", since=900.0) if t < 1006.0]
    assert len(recovery) == 3
    assert reconnect_failures(text, "nvme0", since=0.0) == []


def test_attempts_before_the_window_are_not_counted() -> None:
    text = (LOGS / "dmesg_fc_timers_tgt.txt").read_text()
    assert reconnect_failures(text, "nvme1", since=1054.2) == []


def test_rdma_wording() -> None:
    """nvme-rdma and nvme-tcp say 'Failed reconnect attempt N' (drivers/nvme/host/rdma.c)."""
    text = (LOGS / "dmesg_rdma_timers_ini.txt").read_text()
    recovery = reconnect_failures(text, "nvme2", since=0.0)
    assert len(recovery) == 3 + 8
    loss = reconnect_failures(text, "nvme2", since=1339.98)
    assert len(loss) == 8  # ctrl_loss_tmo 16 / reconnect_delay 2
    assert all(1.8 < gap < 2.3 for gap in intervals(loss))


def test_not_dmesg_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="dmesg"):
        reconnect_failures("nvme nvme1: Failed reconnect attempt 1\n", "nvme1", since=0.0)
