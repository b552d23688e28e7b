"""Tunnel session state machine: both ends, with commands reordered, lost, duplicated and timed out.

The initiator end and the target end (behind the real command dispatcher) exchange
WRITE and READ payloads through an in-memory "fabric" that the state machine
reorders, drops and replays. Every packet carries its own id and a body derived
from it, so corruption, duplication and reordering are all visible.
"""

from __future__ import annotations

import hashlib
import struct

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fabqual.ipofc import framing, scsi
from fabqual.ipofc.dispatch import Dispatcher
from fabqual.ipofc.scsi import Opcode, Status
from fabqual.ipofc.session import RESYNC_AFTER, InitiatorSession, Receiver, TargetSession
from fabqual.testing.strategies import stateful_settings

BLOCK = 512
HOLD = 1.0
REORDER = 0.5


class FakeClock:
    """A clock the machine advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_packet(direction: bytes, ident: int, size: int) -> bytes:
    """A packet whose body is a function of its id: any corruption or mix-up is detectable."""
    head = direction + struct.pack(">Q", ident)
    body = (hashlib.sha256(head).digest() * (size // 32 + 1))[: max(0, size - len(head))]
    return head + body


def check_packet(direction: bytes, packet: bytes) -> int:
    """The id of an intact packet (asserts it is intact)."""
    assert packet[:1] == direction, f"packet {packet[:9].hex()} in the wrong direction"
    ident = struct.unpack(">Q", packet[1:9])[0]
    assert packet == make_packet(direction, ident, len(packet)), f"packet {ident} corrupted"
    return ident


class TunnelMachine(RuleBasedStateMachine):
    """Initiator ⇄ fabric ⇄ dispatcher + target session."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.target = TargetSession(self.clock, hold_time=HOLD, reorder_timeout=REORDER)
        self.lu = Dispatcher(data_path=self.target)
        self.initiator = InitiatorSession(self.clock, reorder_timeout=REORDER)
        self.next_id = 0
        self.next_cmd = 0
        self.sent: dict[bytes, list[int]] = {b"U": [], b"D": []}  # ids accepted by each sender, in order
        self.delivered: dict[bytes, list[int]] = {b"U": [], b"D": []}
        self.lost: dict[bytes, set[int]] = {b"U": set(), b"D": set()}  # ids in frames the fabric dropped
        self.discarded: dict[bytes, set[int]] = {b"U": set(), b"D": set()}  # ids in frames the receiver refused
        self.writes: list[bytes] = []  # WRITE data-out in flight
        self.reads: list[tuple[int, int, bytes]] = []  # completed READs in flight: (cmd_id, capacity, data)
        self.issued: dict[int, int] = {}  # outstanding READ cmd_id -> capacity
        self.completed: set[int] = set()

    # --- helpers -----------------------------------------------------------------
    def _complete(self, cmd_id: int, data: bytes) -> None:
        assert cmd_id not in self.completed, f"READ {cmd_id} completed twice"
        capacity = self.issued.pop(cmd_id)
        assert len(data) <= capacity
        self.completed.add(cmd_id)
        self.reads.append((cmd_id, capacity, data))

    def _poll_target(self) -> None:
        for cmd_id, data in self.target.completions():
            self._complete(cmd_id, data)
        for pkt in self.target.take_inbound():
            self.delivered[b"U"].append(check_packet(b"U", pkt))

    def _ids(self, direction: bytes, data: bytes) -> set[int]:
        return {check_packet(direction, p) for p in framing.decode_frame(data).packets}

    def _receive(self, receiver: Receiver, direction: bytes, data: bytes, deliver: object) -> None:
        before = receiver.stats.late + receiver.stats.duplicates
        deliver()  # type: ignore[operator]
        if receiver.stats.late + receiver.stats.duplicates > before:
            self.discarded[direction] |= self._ids(direction, data)

    # --- rules -------------------------------------------------------------------
    @initialize(start=st.sampled_from([0, framing.SEQ_MODULUS - 3]))
    def start_sequence(self, start: int) -> None:
        """Start both directions at 0 or just before the 32-bit wrap."""
        self.initiator.sender.next_seq = self.target.receiver.expected = start
        self.target.sender.next_seq = self.initiator.receiver.expected = start

    @rule(size=st.integers(9, 3000))
    def packet_up(self, size: int) -> None:
        if self.initiator.push(make_packet(b"U", self.next_id, size)):
            self.sent[b"U"].append(self.next_id)
        self.next_id += 1

    @rule(size=st.integers(9, 3000))
    def packet_down(self, size: int) -> None:
        if self.target.push(make_packet(b"D", self.next_id, size)):
            self.sent[b"D"].append(self.next_id)
        self.next_id += 1
        self._poll_target()

    @rule(blocks=st.integers(1, 24))
    def issue_write(self, blocks: int) -> None:
        data = self.initiator.write_frame(blocks * BLOCK)
        if data is not None:
            assert len(data) <= blocks * BLOCK
            self.writes.append(data.ljust(-(-len(data) // BLOCK) * BLOCK, b"\0"))

    @precondition(lambda self: self.writes)
    @rule(data=st.data(), replay=st.booleans())
    def deliver_write(self, data: st.DataObject, replay: bool) -> None:
        """Deliver any in-flight WRITE (reordering); with replay, keep a copy to deliver again later."""
        i = data.draw(st.integers(0, len(self.writes) - 1))
        payload = self.writes[i] if replay else self.writes.pop(i)
        cdb = scsi.encode_cdb(Opcode.WRITE_16, transfer_length=len(payload) // BLOCK)

        def go() -> None:
            resp = self.lu.handle(cdb, payload)
            assert resp is not None and resp.status == Status.GOOD, resp

        self._receive(self.target.receiver, b"U", payload, go)
        self._poll_target()

    @precondition(lambda self: self.writes)
    @rule(data=st.data())
    def lose_write(self, data: st.DataObject) -> None:
        payload = self.writes.pop(data.draw(st.integers(0, len(self.writes) - 1)))
        self.lost[b"U"] |= self._ids(b"U", payload)

    @precondition(lambda self: len(self.issued) < 8)
    @rule(blocks=st.integers(1, 24), ten=st.booleans())
    def issue_read(self, blocks: int, ten: bool) -> None:
        cmd_id = self.next_cmd
        self.next_cmd += 1
        self.issued[cmd_id] = blocks * BLOCK
        op = Opcode.READ_10 if ten else Opcode.READ_16
        resp = self.lu.handle(scsi.encode_cdb(op, transfer_length=blocks), b"", cmd_id)
        if resp is not None:
            assert resp.status == Status.GOOD
            self._complete(cmd_id, resp.data_in)
        self._poll_target()

    @precondition(lambda self: self.reads)
    @rule(data=st.data())
    def deliver_read(self, data: st.DataObject) -> None:
        _, _, payload = self.reads.pop(data.draw(st.integers(0, len(self.reads) - 1)))

        def go() -> None:
            packets, _more = self.initiator.read_done(payload)
            self.delivered[b"D"].extend(check_packet(b"D", p) for p in packets)

        self._receive(self.initiator.receiver, b"D", payload, go)

    @precondition(lambda self: self.reads)
    @rule(data=st.data())
    def lose_read(self, data: st.DataObject) -> None:
        _, _, payload = self.reads.pop(data.draw(st.integers(0, len(self.reads) - 1)))
        self.lost[b"D"] |= self._ids(b"D", payload)

    @precondition(lambda self: self.target.held)
    @rule(data=st.data())
    def abort_read(self, data: st.DataObject) -> None:
        """The initiator gives up on a held READ (ABORT TASK): the target must forget it."""
        cmd_id = data.draw(st.sampled_from(sorted(self.target.held)))
        assert self.target.abort(cmd_id)
        del self.issued[cmd_id]
        self.completed.add(cmd_id)

    @rule(dt=st.sampled_from([0.01, 0.2, 0.6, 1.5]))
    def advance_time(self, dt: float) -> None:
        self.clock.now += dt
        self._poll_target()
        self.delivered[b"D"].extend(check_packet(b"D", p) for p in self.initiator.expire())

    # --- invariants ---------------------------------------------------------------
    @invariant()
    def delivered_in_order_without_duplicates(self) -> None:
        for direction, ids in self.delivered.items():
            assert ids == sorted(set(ids)), f"{direction!r}: out of order or duplicated: {ids}"
            assert set(ids) <= set(self.sent[direction])

    @invariant()
    def held_reads_are_live(self) -> None:
        """No READ is held while packets wait, or past its deadline, and only issued READs are held."""
        assert not (self.target.held and self.target.sender.pending)
        assert all(h.deadline > self.clock.now for h in self.target.held.values())
        assert set(self.target.held) <= set(self.issued)

    def teardown(self) -> None:
        """Flush everything still in flight; every packet sent is then delivered or was in a dropped frame."""
        while self.initiator.sender.pending:
            self.issue_write(64)
        while self.writes:
            payload = self.writes.pop(0)
            cdb = scsi.encode_cdb(Opcode.WRITE_16, transfer_length=len(payload) // BLOCK)
            self._receive(self.target.receiver, b"U", payload, lambda p=payload, c=cdb: self.lu.handle(c, p))
        while self.target.sender.pending:
            if len(self.issued) >= 8:
                self.clock.now += HOLD
            self.issue_read(64, False)
        self.clock.now += 10
        self._poll_target()
        while self.reads:
            _, _, payload = self.reads.pop(0)
            self._receive(
                self.initiator.receiver,
                b"D",
                payload,
                lambda p=payload: self.delivered[b"D"].extend(
                    check_packet(b"D", x) for x in self.initiator.read_done(p)[0]
                ),
            )
        self.clock.now += 10
        self._poll_target()
        self.delivered[b"D"].extend(check_packet(b"D", p) for p in self.initiator.expire())
        self.delivered_in_order_without_duplicates()
        for direction in (b"U", b"D"):
            missing = set(self.sent[direction]) - set(self.delivered[direction])
            unexplained = missing - self.lost[direction] - self.discarded[direction]
            assert not unexplained, f"{direction!r}: packets vanished: {sorted(unexplained)[:10]}"
        assert not self.issued, f"READs never completed: {sorted(self.issued)}"


TestTunnelSession = TunnelMachine.TestCase
TestTunnelSession.settings = stateful_settings()


def test_receiver_counts_a_lost_batch_after_the_timeout() -> None:
    """A gap in sequence numbers holds later batches for the reorder timeout, then counts one loss and moves on."""
    clock = FakeClock()
    rx = Receiver(clock, reorder_timeout=REORDER)
    assert rx.accept(framing.Frame(1, (b"b",))) == []
    clock.now += REORDER / 2
    assert rx.expire() == []
    clock.now += REORDER
    assert rx.expire() == [b"b"]
    assert rx.stats.lost_frames == 1
    assert rx.accept(framing.Frame(0, (b"a",))) == [] and rx.stats.late == 1


def test_receiver_window_skips_far_ahead() -> None:
    """A batch further ahead than the window closes the gap below the window at once (bounded memory)."""
    clock = FakeClock()
    rx = Receiver(clock, window=4, reorder_timeout=REORDER)
    assert rx.accept(framing.Frame(10, (b"x",))) == []
    assert (rx.stats.lost_frames, rx.expected) == (7, 7)
    clock.now += REORDER
    assert rx.expire() == [b"x"]
    assert rx.stats.lost_frames == 10


def test_packet_too_big_for_this_read_waits_with_more() -> None:
    """A queued packet bigger than a READ's transfer is not dropped: the READ gets an empty frame with MORE set,
    and a big enough READ carries it."""
    session = TargetSession(FakeClock())
    session.push(b"x" * 2000)
    small = framing.decode_frame(session.read(1, 512) or b"")
    assert (small.packets, small.more) == ((), True)
    assert framing.decode_frame(session.read(2, 4096) or b"").packets == (b"x" * 2000,)
    assert session.sender.stats.dropped_oversize == 0


def test_push_refuses_oversize_and_queue_overflow() -> None:
    """push() refuses empty and over-max packets and tail-drops beyond the queue limit, counting each."""
    session = TargetSession(FakeClock(), queue_limit=3000)
    assert not session.push(b"")
    assert not session.push(b"x" * (framing.MAX_PACKET + 1))
    assert session.push(b"x" * 2000) and not session.push(b"y" * 1001)
    stats = session.sender.stats
    assert (stats.dropped_oversize, stats.dropped_queue_full, stats.packets_queued) == (2, 1, 1)


def test_out_of_order_bytes_are_bounded_and_the_gap_still_drains() -> None:
    """Batches ahead of a gap are held only up to max_bytes; beyond it they are dropped and counted, and the
    gap's own batch is always taken (it drains what waited)."""
    clock = FakeClock()
    rx = Receiver(clock, reorder_timeout=REORDER, max_bytes=10_000)
    big = (b"x" * 4000,)
    assert rx.accept(framing.Frame(1, big)) == [] and rx.accept(framing.Frame(2, big)) == []
    assert rx.accept(framing.Frame(3, big)) == []  # would hold 12000 > 10000
    assert (rx.stats.dropped_over_budget, rx.stats.dropped_over_budget_bytes, rx.pending_bytes) == (1, 4000, 8000)
    assert rx.accept(framing.Frame(0, (b"y" * 9000,))) == [b"y" * 9000, *big, *big]
    assert rx.pending_bytes == 0 and rx.expected == 3


def test_a_displaced_sequence_is_followed_after_a_few_batches() -> None:
    """A stream far behind the expected sequence (another sender moved it) is taken up after RESYNC_AFTER
    batches; a single late retry a few behind is only counted as late."""
    clock = FakeClock()
    rx = Receiver(clock, reorder_timeout=REORDER)
    rx.expected = 5000
    assert rx.accept(framing.Frame(4990, (b"retry",))) == [] and rx.stats.late == 1
    got = [rx.accept(framing.Frame(100 + i, (bytes([i]),))) for i in range(RESYNC_AFTER + 1)]
    assert got[: RESYNC_AFTER - 1] == [[]] * (RESYNC_AFTER - 1)
    assert got[RESYNC_AFTER - 1 :] == [[bytes([RESYNC_AFTER - 1])], [bytes([RESYNC_AFTER])]]
    assert (rx.stats.resyncs, rx.stats.late) == (1, RESYNC_AFTER)
