"""The tunnel daemons' own logic: CLI contract, sequence resynchronisation, refusal of foreign devices.

The kernel-facing paths (TCMU ring, SG_IO, TUN) run for real in
``tests/self/lab/test_ipofc_live.py`` on the lab; here only what needs no guest.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fabqual.errors import CodecError, DriverError
from fabqual.ipofc import framing, initiator_daemon, target_daemon
from fabqual.ipofc.session import Receiver, TargetSession
from fabqual.ipofc.tcmu import TcmuDevice


def test_target_cli_is_the_documented_one() -> None:
    """The flags the link driver relies on parse as documented in the module docstring."""
    args = target_daemon.parse_args(
        ["--backstore", "fq", "--tun", "ipofc0", "--address", "10.77.0.1/30", "--mtu", "9000", "--log", "/tmp/x"]
    )
    assert (args.backstore, args.tun, args.address, args.mtu, args.hold) == ("fq", "ipofc0", "10.77.0.1/30", 9000, 1.0)
    assert target_daemon.parse_args(["--uio", "auto", "--tun", "t"]).uio == "auto"
    with pytest.raises(SystemExit):
        target_daemon.parse_args(["--uio", "auto", "--backstore", "fq", "--tun", "t"])  # one or the other
    assert target_daemon.HANDLER == "fabqual"


def test_initiator_cli_is_the_documented_one() -> None:
    args = initiator_daemon.parse_args(
        ["--vendor", "FABQUAL", "--tun", "ipofc0", "--inflight-reads", "4", "--inflight-writes", "2"]
    )
    assert (args.vendor, args.model, args.inflight_reads, args.inflight_writes) == ("FABQUAL", "IPoFC tunnel", 4, 2)
    assert initiator_daemon.parse_args(["--sg", "/dev/sg3", "--tun", "t"]).sg == "/dev/sg3"


def test_initiator_without_its_device_fails_in_one_log_line(tmp_path: Path) -> None:
    """No such sg device: exit status 1 and one ERROR line naming it, no traceback."""
    log = tmp_path / "ini.log"
    logger = logging.getLogger("fabqual")
    before = list(logger.handlers)
    try:
        status = initiator_daemon.main(["--sg", "/dev/sg-fabqual-none", "--tun", "fqnone0", "--log", str(log)])
    finally:
        for handler in set(logger.handlers) - set(before):  # main() configured the daemon's logging
            logger.removeHandler(handler)
            handler.close()
    text = log.read_text()
    assert status == 1 and "ERROR" in text and "/dev/sg-fabqual-none" in text and "Traceback" not in text


def test_uio_of_another_handler_is_refused(tmp_path: Path) -> None:
    """A UIO device whose dev_config is not fabqual/... (e.g. tcmu-runner's fbo) is never served."""
    uio = tmp_path / "uio3"
    (uio / "maps" / "map0").mkdir(parents=True)
    (uio / "name").write_text("tcm-user/0/cdrom/fbo//var/tmp/fbo.img\n")
    (uio / "maps" / "map0" / "size").write_text("0x10800000\n")
    with pytest.raises(DriverError, match="not a TCMU backstore with dev_config=fabqual"):
        TcmuDevice.open_handler("/dev/uio3", "fabqual", sysfs=tmp_path)
    with pytest.raises(DriverError, match="0 TCMU UIO devices"):
        TcmuDevice.open_handler("auto", "fabqual", sysfs=tmp_path)


def test_a_peer_restarted_far_away_is_skipped_in_one_step() -> None:
    """A batch 2**31 - 1 ahead (a restarted peer's random start) is handled at once, not counted one by one."""
    rx = Receiver(time.monotonic, reorder_timeout=0.0)
    start = time.monotonic()
    rx.accept(framing.Frame((1 << 31) - 1, (b"p",)))
    delivered = rx.expire()
    assert delivered == [b"p"] and time.monotonic() - start < 1.0
    assert rx.stats.lost_frames == (1 << 31) - 1


def test_initiator_announcement_resynchronises_the_target() -> None:
    """An empty WRITE frame sets the sequence the target expects; the batch after it is delivered at once."""
    session = TargetSession()
    path = target_daemon.SyncingPath(session)
    session.receiver.expected = 17  # what an earlier initiator left
    path.write(framing.encode_frame(framing.Frame(123456)))
    path.write(framing.encode_frame(framing.Frame(123456, (b"packet",))))
    assert session.take_inbound() == [b"packet"] and session.receiver.stats.resyncs == 1


def test_announcement_that_is_not_a_frame_is_rejected() -> None:
    """Count 0 but a wrong magic: the dispatcher turns this CodecError into CHECK CONDITION."""
    path = target_daemon.SyncingPath(TargetSession())
    bad = bytearray(framing.encode_frame(framing.Frame(1)))
    bad[0] ^= 0xFF
    with pytest.raises(CodecError):
        path.write(bytes(bad))


def test_rejected_write_frames_are_counted_by_cause() -> None:
    """Every WRITE frame the target refuses is counted under the check that refused it (magic, CRC, truncated)."""
    path = target_daemon.SyncingPath(TargetSession())
    good = framing.encode_frame(framing.Frame(0, (b"packet",), crc=True))
    bad_crc = good[:-1] + bytes([good[-1] ^ 1])
    for payload in (b"IPFC", b"XXXX" + good[4:], bad_crc, bad_crc):
        with pytest.raises(CodecError):
            path.write(payload)
    assert path.rejected == {"truncated": 1, "magic": 1, "crc": 2}
    assert set(path.rejected) <= set(framing.REJECT_KINDS)
