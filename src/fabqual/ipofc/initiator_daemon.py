"""The IPoFC initiator end: TUN packets batched into SCSI WRITEs, held SCSI READs delivered to TUN.

Command line (stable; the link driver starts it in the background on the initiator node)::

    python3 -m fabqual.ipofc.initiator_daemon
        (--sg /dev/sgN | --vendor VENDOR [--model MODEL])
        --tun IFNAME [--address CIDR] [--mtu N]
        [--inflight-reads 4] [--inflight-writes 4] [--max-transfer BYTES]
        [--timeout SECONDS] [--crc] [--log FILE]

``--vendor``/``--model`` find the LUN by its INQUIRY strings (default model
"IPoFC tunnel"; the target answers vendor "FABQUAL"). ``--tun`` attaches to an
existing TUN device (made with ``ip tuntap add``; it stays) or creates one
(removed on exit); ``--address``/``--mtu`` are applied when given.
``--max-transfer`` caps the bytes of one READ/WRITE (default: the smaller of
1 MiB and the SCSI host's ``max_sectors``), rounded down to 512-byte blocks.
``--timeout`` is the SG_IO command timeout (default 10 s; the target releases a
held READ after 1 s).

Prints one line ``ready initiator sg=/dev/sgN tun=IFNAME max_transfer=N`` on
stdout when running. SIGTERM/SIGINT: the workers stop after their current
command (a held READ returns within the target's hold time), the TUN is detached,
the counters logged (``stopped: {json}``); exit status 0. SIGUSR1 logs them now
(``counters {json}``). Errors go to ``--log`` (default stderr).

What the receiver holds out of order is bounded by 4 x the bytes the READs in
flight can carry (``--inflight-reads`` x max transfer); a batch beyond that is
dropped and counted (``session.py``).

Threads: one reads the TUN device into the session's queue; ``--inflight-writes``
workers each take a batch and WRITE it (blocking SG_IO in its own thread — the
ioctl releases the GIL); ``--inflight-reads`` workers each keep one READ at the
target and deliver what comes back, in sequence order, to the TUN device. A
failed WRITE is sent again with the same sequence number (the target drops a
duplicate); a failed READ is re-issued, and a batch lost with it is skipped by
the receiver's reorder timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import select
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from fabqual.errors import CodecError, FabqualError
from fabqual.ipofc import framing, scsi, sg_io
from fabqual.ipofc.session import InitiatorSession
from fabqual.ipofc.target_daemon import setup_logging
from fabqual.ipofc.tun import Tun

BLOCK = 512
DEFAULT_MAX_TRANSFER = 1 << 20
# One offloaded super-packet (header, record prefix, packet, CRC) in whole blocks.
OFFLOAD_MIN_TRANSFER = (
    -(-(framing.HEADER_SIZE + framing.RECORD_PREFIX + framing.MAX_PACKET + framing.CRC_SIZE) // BLOCK) * BLOCK
)
WRITE_RETRIES = 3
REORDER_MULTIPLE = 4  # out-of-order bytes held: this many times what the READs in flight carry
log = logging.getLogger("fabqual.ipofc.initiator")


def read_cdb(blocks: int) -> bytes:
    return scsi.encode_cdb(scsi.Opcode.READ_16, lba=0, transfer_length=blocks)


def write_cdb(blocks: int) -> bytes:
    return scsi.encode_cdb(scsi.Opcode.WRITE_16, lba=0, transfer_length=blocks)


def host_max_transfer(sg: str, sysfs: Path = Path("/sys/class/scsi_generic")) -> int | None:
    """The largest SG_IO transfer the SCSI host of ``/dev/sgN`` takes, or None when sysfs does not say.

    Its ``max_sectors`` x 512, and at most ``sg_tablesize`` pages: SG_IO maps the caller's
    buffer page by page, so on tcm_loop (256 segments) a 4 MiB command fails with EINVAL.
    """
    device = (sysfs / Path(sg).name / "device").resolve()
    for parent in device.parents:
        if parent.name.startswith("host"):
            host = Path("/sys/class/scsi_host") / parent.name
            try:
                limit = int((host / "max_sectors").read_text()) * BLOCK
            except (OSError, ValueError):
                return None
            try:
                segments = int((host / "sg_tablesize").read_text())
            except (OSError, ValueError):
                return limit
            return min(limit, segments * os.sysconf("SC_PAGE_SIZE")) if segments > 0 else limit
    return None


class InitiatorDaemon:
    """SG_IO workers around one :class:`InitiatorSession`."""

    def __init__(self, sg: str, tun: Tun, session: InitiatorSession, *, max_transfer: int, timeout_ms: int) -> None:
        self.sg = sg
        self.tun = tun
        self.session = session
        self.max_transfer = max_transfer
        self.timeout_ms = timeout_ms
        self.lock = threading.Lock()  # the session and in-order delivery to the TUN device
        self.queued = threading.Condition(self.lock)
        self.stopping = threading.Event()
        self.errors = {"read": 0, "write": 0, "write_lost": 0, "bad_frame": 0}
        self.report_due = threading.Event()
        self.synchronised = False
        self.resync_margin = 64  # beyond any reordering among at most 16 READs in flight

    def stop(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        # No lock here (a signal handler must not wait on a worker): writers poll the event.
        self.stopping.set()

    def report(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        self.report_due.set()  # logged by the main loop: a signal handler must not take the logging lock

    def counters(self) -> dict[str, object]:
        """Everything counted so far, for the ``counters``/``stopped`` log lines."""
        with self.lock:
            return {
                "errors": dict(self.errors),
                "receiver": dict(vars(self.session.receiver.stats)),
                "reorder_bytes": {
                    "held": self.session.receiver.pending_bytes,
                    "limit": self.session.receiver.max_bytes,
                },
                "sender": dict(vars(self.session.sender.stats)),
                "tun_write_drops": self.tun.dropped_writes,
                "invalid_vnet": dict(self.tun.invalid_vnet),
            }

    # --- TUN → session ----------------------------------------------------------------
    def tun_reader(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.tun.fd], [], [], 0.2)
            if not ready:
                continue
            packets = self.tun.read_packets()
            with self.queued:
                for packet in packets:
                    self.session.push(packet)
                self.queued.notify_all()

    # --- session → WRITE --------------------------------------------------------------
    def writer(self) -> None:
        fd = sg_io.open_sg(self.sg)
        try:
            while not self.stopping.is_set():
                with self.queued:
                    frame = self.session.write_frame(self.max_transfer)
                    while frame is None and not self.stopping.is_set():
                        self.queued.wait(0.5)
                        frame = self.session.write_frame(self.max_transfer)
                if frame is None:
                    break
                self.send(fd, frame)
        finally:
            os.close(fd)

    def send(self, fd: int, frame: bytes) -> None:
        padded = frame + bytes(-len(frame) % BLOCK)
        cdb = write_cdb(len(padded) // BLOCK)
        for attempt in range(1, WRITE_RETRIES + 1):
            failure = self._execute(fd, cdb, data_out=padded)
            if failure is None:
                return
            self.errors["write"] += 1
            log.warning("WRITE of %d bytes, attempt %d/%d: %s", len(padded), attempt, WRITE_RETRIES, failure)
            if self.stopping.is_set():
                break
            time.sleep(0.05 * attempt)
        self.errors["write_lost"] += 1  # the target's receiver skips the gap after its reorder timeout

    # --- READ → TUN -------------------------------------------------------------------
    def reader(self) -> None:
        fd = sg_io.open_sg(self.sg)
        cdb = read_cdb(self.max_transfer // BLOCK)
        backoff = 0.0
        try:
            while not self.stopping.is_set():
                result: sg_io.SgResult | None = None
                try:
                    result = sg_io.execute(fd, cdb, data_in_len=self.max_transfer, timeout_ms=self.timeout_ms)
                    failure = None if result.good else describe(result)
                except FabqualError as err:
                    failure = str(err)
                if result is None or failure is not None:
                    self.errors["read"] += 1
                    log.warning("READ: %s", failure)
                    backoff = min(1.0, backoff * 2 or 0.05)
                    self.stopping.wait(backoff)
                    continue
                backoff = 0.0
                self.deliver(result.data_in)
        finally:
            os.close(fd)

    def deliver(self, data: bytes) -> None:
        receiver = self.session.receiver
        with self.lock:
            packets: list[bytes] = []
            try:
                frame = framing.decode_frame(data)
            except CodecError as err:
                self.errors["bad_frame"] += 1
                log.warning("READ data is not a tunnel frame: %s", err)
            else:
                behind = (receiver.expected - frame.seq) % framing.SEQ_MODULUS
                far = min(behind, framing.SEQ_MODULUS - behind) > self.resync_margin
                if far and not (frame.packets and self.synchronised):
                    # An empty frame announces the target's next sequence number. Reordering and loss
                    # among our few in-flight READs put it at most a few away; far away means the
                    # target daemon (re)started (it starts at a random number).
                    log.info("target announced sequence %d (expected %d): resynchronised", frame.seq, receiver.expected)
                    receiver.resync(frame.seq)
                self.synchronised = True  # the first frame from the target sets the sequence
                packets = receiver.accept(frame)
            packets += self.session.expire()
            for packet in packets:
                self.tun.write(packet)

    def expirer(self) -> None:
        """Skip lost batches even when no READ completes (gaps otherwise wait for the next one)."""
        while not self.stopping.wait(0.1):
            with self.lock:
                for packet in self.session.expire():
                    self.tun.write(packet)

    def _execute(self, fd: int, cdb: bytes, *, data_out: bytes) -> str | None:
        try:
            result = sg_io.execute(fd, cdb, data_out=data_out, timeout_ms=self.timeout_ms)
        except FabqualError as err:
            return str(err)
        return None if result.good else describe(result)

    def announce(self) -> None:
        """Tell the target our first sequence number (an empty WRITE frame), so a restarted
        initiator is not taken for stale replays; the link is not up until this gets through."""
        frame = framing.encode_frame(framing.Frame(self.session.sender.next_seq))
        padded = frame + bytes(-len(frame) % BLOCK)
        fd = sg_io.open_sg(self.sg)
        try:
            for attempt in range(1, 11):
                failure = self._execute(fd, write_cdb(len(padded) // BLOCK), data_out=padded)
                if failure is None:
                    return
                log.warning("sequence announcement, attempt %d/10: %s", attempt, failure)
                if self.stopping.wait(0.5):
                    break
        finally:
            os.close(fd)
        raise FabqualError(f"the target on {self.sg} did not accept the sequence announcement (WRITE); see the log")

    def run(self, reads: int, writes: int) -> None:
        threads = [threading.Thread(target=self.tun_reader, name="tun", daemon=True)]
        threads += [threading.Thread(target=self.expirer, name="expire", daemon=True)]
        threads += [threading.Thread(target=self.reader, name=f"read{i}", daemon=True) for i in range(reads)]
        threads += [threading.Thread(target=self.writer, name=f"write{i}", daemon=True) for i in range(writes)]
        for thread in threads:
            thread.start()
        while not self.stopping.wait(1.0):
            if self.report_due.is_set():
                self.report_due.clear()
                log.info("counters %s", json.dumps(self.counters(), sort_keys=True))
            dead = [t.name for t in threads if not t.is_alive()]
            # A SIGTERM handled between the wait and this check lets workers end first: not a death.
            if dead and not self.stopping.is_set():
                log.error("worker threads %s died; stopping", dead)
                self.stop()
                raise RuntimeError(f"worker threads {dead} died")
        deadline = time.monotonic() + 3.0  # a held READ returns within the target's hold time
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        log.info("stopped: %s", json.dumps(self.counters(), sort_keys=True))


def describe(result: sg_io.SgResult) -> str:
    """One line for a command that did not come back GOOD."""
    text = f"status 0x{result.status:02x} host 0x{result.host_status:x} driver 0x{result.driver_status:x}"
    if result.sense:
        try:
            sense = scsi.decode_sense(result.sense)
            text += f" sense key {int(sense.key):x} ASC/ASCQ {sense.asc:02x}/{sense.ascq:02x}"
        except CodecError:
            text += f" sense {result.sense.hex()}"
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m fabqual.ipofc.initiator_daemon", description=__doc__.split("\n")[0]
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sg", help="the tunnel LUN's /dev/sgN")
    where.add_argument("--vendor", help="find the LUN by INQUIRY vendor (FABQUAL)")
    parser.add_argument("--model", default=scsi.StandardInquiry().product, help="INQUIRY product with --vendor")
    parser.add_argument("--tun", required=True, help="TUN device name (attached if it exists, else created)")
    parser.add_argument("--address", help="address/prefix for the TUN device, e.g. 10.77.0.2/30")
    parser.add_argument("--mtu", type=int, help="TUN MTU")
    parser.add_argument("--inflight-reads", type=int, default=4, help="READs kept at the target")
    parser.add_argument("--inflight-writes", type=int, default=4, help="WRITEs in flight at most")
    parser.add_argument("--max-transfer", type=int, help="bytes per READ/WRITE (default min(1 MiB, host max))")
    parser.add_argument("--timeout", type=float, default=10.0, help="SG_IO timeout per command, seconds")
    parser.add_argument("--crc", action="store_true", help="CRC-32 on every frame sent")
    parser.add_argument("--offload", action="store_true", help="TUN checksum/TSO offload (the target must match)")
    parser.add_argument("--log", help="log file (default: stderr)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log)
    if not (1 <= args.inflight_reads <= 16 and 1 <= args.inflight_writes <= 16):
        log.error("--inflight-reads/--inflight-writes must be 1..16 (sg queues at most 16 per fd)")
        return 1
    if args.sg:
        sg = args.sg
    else:
        found = sg_io.find_sg(args.vendor, args.model)
        if len(found) != 1:
            log.error("%d sg devices report %r %r (%s); pass --sg", len(found), args.vendor, args.model, found)
            return 1
        sg = found[0]
    limit = host_max_transfer(sg) or DEFAULT_MAX_TRANSFER
    max_transfer = min(args.max_transfer or DEFAULT_MAX_TRANSFER, limit) // BLOCK * BLOCK
    if max_transfer < 16 * 1024:
        log.error("max transfer %d bytes is below 16 KiB: too small for a 9000-byte packet and its frame", max_transfer)
        return 1
    if args.offload and max_transfer < OFFLOAD_MIN_TRANSFER:
        log.error(
            "--offload needs %d-byte transfers for a 64 KiB super-packet; this LUN allows %d: run without it",
            OFFLOAD_MIN_TRANSFER,
            max_transfer,
        )
        return 1
    try:
        os.close(sg_io.open_sg(sg))
        tun = Tun.open(args.tun, mtu=args.mtu, address=args.address, offload=args.offload)
    except FabqualError as err:
        log.error("%s", err)
        return 1
    session = InitiatorSession(crc=args.crc, reorder_bytes=REORDER_MULTIPLE * args.inflight_reads * max_transfer)
    session.sender.next_seq = random.randrange(framing.SEQ_MODULUS)  # see announce()
    daemon = InitiatorDaemon(sg, tun, session, max_transfer=max_transfer, timeout_ms=int(args.timeout * 1000))
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    signal.signal(signal.SIGUSR1, daemon.report)
    try:
        daemon.announce()
    except FabqualError as err:
        log.error("%s", err)
        tun.close()
        return 1
    print(f"ready initiator sg={sg} tun={tun.name} max_transfer={max_transfer}", flush=True)
    log.info("tunnel on %s via TUN %s, %d-byte transfers", sg, tun.name, max_transfer)
    try:
        daemon.run(args.inflight_reads, args.inflight_writes)
    except Exception as err:
        log.exception("initiator daemon failed: %s", err)
        return 1
    finally:
        tun.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
