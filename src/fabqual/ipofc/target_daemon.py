"""The IPoFC target end: a TCMU handler that carries IP packets between SCSI commands and a TUN device.

Command line (stable; the link driver starts it in the background on the target node)::

    python3 -m fabqual.ipofc.target_daemon
        (--backstore NAME | --uio /dev/uioN | --uio auto)
        --tun IFNAME [--address CIDR] [--mtu N]
        [--hold SECONDS] [--crc] [--offload]
        [--reorder-bytes N] [--reorder-timeout SECONDS] [--log FILE] [--verbose]

``--backstore NAME`` serves the ``user_*/NAME`` backstore; ``--uio auto`` the only
TCMU device whose ``dev_config`` is ``fabqual/<cfg>``. The handler name agreed with
the carrier is **fabqual**: the backstore's configfs ``control`` must carry
``dev_config=fabqual/<cfg>`` (any ``<cfg>``, e.g. the link name), and the daemon
refuses a UIO device of another handler. ``--tun`` attaches to an existing TUN
device (made with ``ip tuntap add``; it stays) or creates one (removed on exit);
``--address``/``--mtu`` are applied when given. ``--hold`` is how long a READ is
held waiting for packets (default 1 s: far below the initiator's and LIO's 30 s
command timeouts). ``--crc`` adds a CRC-32 to every frame sent. ``--reorder-bytes``
bounds the packet bytes held out of order (default 16 MiB, 4 x what the initiator's
default 4 WRITEs of 1 MiB carry): a batch beyond it that does not fill the gap is
dropped and counted, so a peer sending maximum-size WRITEs that never complete a
sequence cannot grow the daemon (``session.py``); ``--reorder-timeout`` (default
0.5 s) is how long a gap may wait before its batch is declared lost.

Prints one line ``ready target uio=/dev/uioN tun=IFNAME`` on stdout when serving.
SIGTERM/SIGINT: every held READ is completed (empty frame), the ring is drained,
the TUN detached, the counters logged (``stopped: {json}``); exit status 0. SIGUSR1
logs the counters now (``counters {json}``): WRITE frames rejected by cause
(``rejected_frames``, the kinds of ``framing.REJECT_KINDS``), the receiver's
late/duplicate/lost/over-budget batches, TUN write drops and invalid virtio-net
headers by field. Errors go to ``--log`` (default stderr), one line
each; a fatal one exits with status 1.

Single-threaded: one ``select`` on the UIO fd (the kernel posted commands) and the
TUN fd (packets to send), with a timeout at the next held-READ deadline. READs are
completed out of order (TCMU CAP_OOOC) so several can be held at once.
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
import time
from types import FrameType

from fabqual.errors import CodecError, FabqualError
from fabqual.ipofc import framing, scsi
from fabqual.ipofc.dispatch import Dispatcher, Response
from fabqual.ipofc.session import DEFAULT_REORDER_BYTES, TargetSession
from fabqual.ipofc.tcmu import Command, TaskManagement, TcmuDevice
from fabqual.ipofc.tun import Tun

HANDLER = "fabqual"
REORDER_BYTES_RANGE = (64 << 10, 1 << 30)
WAKE_INTERVAL = 0.5  # upper bound on a select: a signal's flag is seen even when nothing else happens
log = logging.getLogger("fabqual.ipofc.target")


class RingBroken(FabqualError):
    """The command ring holds something this handler cannot parse: stop rather than guess."""


class SyncingPath:
    """The dispatcher's data path: the session, plus the initiator's sequence announcement.

    An empty WRITE frame is never sent for data (the initiator has nothing to say then);
    the initiator daemon sends one when it starts, so a restarted initiator (new, random
    sequence) is not mistaken for a stream of stale replays.
    """

    def __init__(self, session: TargetSession) -> None:
        self.session = session
        self.rejected: dict[str, int] = {}  # framing.REJECT_KINDS -> WRITE frames answered CHECK CONDITION

    def write(self, payload: bytes) -> None:
        try:
            self._write(payload)
        except framing.FramingError as err:
            self.rejected[err.kind] = self.rejected.get(err.kind, 0) + 1
            raise

    def _write(self, payload: bytes) -> None:
        if payload[6:8] == b"\0\0":  # count 0: decode fully (checks magic etc.) and resync
            frame = framing.decode_frame(payload)
            if frame.seq != self.session.receiver.expected:
                log.info(
                    "initiator announced sequence %d (expected %d): resynchronised",
                    frame.seq,
                    self.session.receiver.expected,
                )
                self.session.receiver.resync(frame.seq)
            return
        self.session.write(payload)

    def read(self, cmd_id: int, capacity: int) -> bytes | None:
        return self.session.read(cmd_id, capacity)


class TargetDaemon:
    """The TCMU ring, the dispatcher and the TUN device glued by one select loop."""

    def __init__(self, device: TcmuDevice, tun: Tun, session: TargetSession) -> None:
        self.device = device
        self.ring = device.ring
        self.tun = tun
        self.session = session
        self.path = SyncingPath(session)
        self.dispatcher = Dispatcher(data_path=self.path)
        self.held: dict[int, Command] = {}  # READs the session holds, to scatter into when they complete
        self.stopping = False
        self.report_due = False
        self.commands = 0

    def stop(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        self.stopping = True

    def report(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        self.report_due = True  # logged by the loop: a signal handler must not take the logging lock

    def counters(self) -> dict[str, object]:
        """Everything counted so far, for the ``counters``/``stopped`` log lines."""
        return {
            "commands": self.commands,
            "rejected_frames": dict(self.path.rejected),
            "receiver": vars(self.session.receiver.stats),
            "reorder_bytes": {"held": self.session.receiver.pending_bytes, "limit": self.session.receiver.max_bytes},
            "sender": vars(self.session.sender.stats),
            "tun_write_drops": self.tun.dropped_writes,
            "invalid_vnet": dict(self.tun.invalid_vnet),
        }

    def run(self) -> None:
        if not self.ring.out_of_order:
            log.warning("kernel ring lacks CAP_OOOC: a held READ delays every later completion")
        self.service_ring()  # commands posted before we started
        while not self.stopping:
            deadline = self.session.next_deadline()
            timeout = WAKE_INTERVAL if deadline is None else min(WAKE_INTERVAL, max(0.0, deadline - time.monotonic()))
            try:
                ready, _, _ = select.select([self.device.fd, self.tun.fd], [], [], timeout)
            except InterruptedError:
                continue
            if self.device.fd in ready:
                os.read(self.device.fd, 4)  # consume the UIO event count
                self.service_ring()
            if self.tun.fd in ready:
                for packet in self.tun.read_packets():
                    self.session.push(packet)
            self.flush()
            if self.report_due:
                self.report_due = False
                log.info("counters %s", json.dumps(self.counters(), sort_keys=True))
        self.shutdown()

    def service_ring(self) -> None:
        moved = False
        try:
            for entry in self.ring.poll():
                if isinstance(entry, TaskManagement):
                    moved |= self.task_management(entry)
                else:
                    moved |= self.command(entry)
        except CodecError as err:  # the kernel and we disagree about the ring: nothing later can be trusted
            raise RingBroken(f"TCMU ring on /dev/{self.device.uio}: {err}") from None
        for packet in self.session.take_inbound():
            self.tun.write(packet)
        if moved:
            self.device.kick()

    def command(self, command: Command) -> bool:
        self.commands += 1
        data_out = self.ring.gather(command) if command.cdb[:1] and command.cdb[0] in scsi.WRITE_OPCODES else b""
        response = self.dispatcher.handle(command.cdb, data_out, command.cmd_id)
        log.debug("cmd %d CDB %s -> %s", command.cmd_id, command.cdb.hex(), "held" if response is None else "done")
        if response is None:
            self.held[command.cmd_id] = command  # completed later by flush()
            return False
        if response.status != scsi.Status.GOOD:
            log.info(
                "cmd %d CDB %s: status 0x%02x sense %s",
                command.cmd_id,
                command.cdb.hex(),
                response.status,
                response.sense.hex(),
            )
        return self.complete(command, response)

    def complete(self, command: Command, response: Response) -> bool:
        written = self.ring.scatter(command, response.data_in) if response.data_in else 0
        # Every GOOD answer but a WRITE's says how much data-in it wrote, also none: without read_len
        # the kernel reports the whole buffer as transferred (REQUEST SENSE with allocation length 0
        # came back as 4096 bytes of stale buffer). Not for a WRITE: there it would count a residual.
        good_data_in = response.status == scsi.Status.GOOD and command.cdb[0] not in scsi.WRITE_OPCODES
        read_len = written if good_data_in or response.data_in else None
        return self.ring.complete(command.cmd_id, int(response.status), response.sense, read_len)

    def task_management(self, tmr: TaskManagement) -> bool:
        """ABORT TASK et al.: aborted held READs complete now, empty, so no packet is lost with them."""
        log.info("TMR type %d for commands %s", tmr.tmr_type, list(tmr.cmd_ids))
        moved = False
        for cmd_id in tmr.cmd_ids:
            if self.session.abort(cmd_id):
                moved |= self._complete_held(cmd_id, self.empty_frame())
        return moved

    def empty_frame(self) -> bytes:
        return framing.encode_frame(framing.Frame(self.session.sender.next_seq))

    def _complete_held(self, cmd_id: int, frame: bytes) -> bool:
        command = self.held.pop(cmd_id, None)
        if command is None:
            return False
        return self.complete(command, Response.good(frame))

    def flush(self) -> None:
        """Complete held READs that have packets for them or reached their deadline."""
        moved = False
        for cmd_id, frame in self.session.completions():
            moved |= self._complete_held(cmd_id, frame)
        if moved:
            self.device.kick()

    def shutdown(self) -> None:
        """Release every held READ (empty), answer what the kernel still posted, kick once more."""
        self.service_ring()
        moved = False
        for cmd_id in list(self.session.held):
            self.session.abort(cmd_id)
            moved |= self._complete_held(cmd_id, self.empty_frame())
        if moved:
            self.device.kick()
        log.info("stopped: %s", json.dumps(self.counters(), sort_keys=True))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m fabqual.ipofc.target_daemon", description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--backstore", help="serve the TCMU backstore user_*/NAME")
    where.add_argument("--uio", help="/dev/uioN, or 'auto' for the only device with dev_config=fabqual/...")
    parser.add_argument("--tun", required=True, help="TUN device name (attached if it exists, else created)")
    parser.add_argument("--address", help="address/prefix for the TUN device, e.g. 10.77.0.1/30")
    parser.add_argument("--mtu", type=int, help="TUN MTU")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds a READ is held waiting for packets")
    parser.add_argument("--crc", action="store_true", help="CRC-32 on every frame sent")
    parser.add_argument("--offload", action="store_true", help="TUN checksum/TSO offload (the initiator must match)")
    parser.add_argument(
        "--reorder-bytes", type=int, default=DEFAULT_REORDER_BYTES, help="packet bytes held out of order at most"
    )
    parser.add_argument("--reorder-timeout", type=float, default=0.5, help="seconds a gap waits before it is lost")
    parser.add_argument("--log", help="log file (default: stderr)")
    parser.add_argument("--verbose", action="store_true", help="log every command")
    return parser.parse_args(argv)


def setup_logging(path: str | None, *, verbose: bool = False) -> None:
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("fabqual")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log, verbose=args.verbose)
    if not 0.05 <= args.hold <= 20:
        log.error("--hold %s outside 0.05..20 s (the initiator's command timeout is 30 s)", args.hold)
        return 1
    if not REORDER_BYTES_RANGE[0] <= args.reorder_bytes <= REORDER_BYTES_RANGE[1]:
        log.error("--reorder-bytes %d outside %d..%d", args.reorder_bytes, *REORDER_BYTES_RANGE)
        return 1
    if not 0.01 <= args.reorder_timeout <= 20:
        log.error("--reorder-timeout %s outside 0.01..20 s", args.reorder_timeout)
        return 1
    try:
        if args.backstore:
            device = TcmuDevice.find(args.backstore)
            subtype = device.name().split("/")[3:4]
            if subtype != [HANDLER]:
                device.close()
                log.error("backstore %s has dev_config subtype %s, not %s/...", args.backstore, subtype, HANDLER)
                return 1
        else:
            device = TcmuDevice.open_handler(args.uio, HANDLER)
        tun = Tun.open(args.tun, mtu=args.mtu, address=args.address, offload=args.offload)
    except FabqualError as err:
        log.error("%s", err)
        return 1
    session = TargetSession(
        hold_time=args.hold,
        crc=args.crc,
        reorder_bytes=args.reorder_bytes,
        reorder_timeout=args.reorder_timeout,
    )
    # A random first sequence number: a restarted target is far from what the initiator expects,
    # which the initiator recognises (see initiator_daemon) instead of dropping batches as stale.
    session.sender.next_seq = random.randrange(framing.SEQ_MODULUS)
    daemon = TargetDaemon(device, tun, session)
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    signal.signal(signal.SIGUSR1, daemon.report)
    print(f"ready target uio=/dev/{device.uio} tun={tun.name}", flush=True)
    log.info("serving /dev/%s (%s) on TUN %s", device.uio, device.name(), tun.name)
    try:
        daemon.run()
    except RingBroken as err:
        log.error("%s; stopping (restart the daemon after fixing the cause)", err)
        return 1
    except Exception as err:  # last resort: one line in the log, not a traceback on the console
        log.exception("target daemon failed: %s", err)
        return 1
    finally:
        tun.close()
        device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
