"""Tunnel session state machines: what each end queues, holds, sends and delivers.

Pure (the clock is injected). Both ends have a :class:`Sender` (outbound packet
queue, batch sequence numbers) and a :class:`Receiver` (reorders batches by
sequence number, drops duplicates, declares a gap lost after a timeout or when it
outgrows the window). What a receiver holds out of order is bounded twice: at most
``window`` batches and at most ``max_bytes`` of packets; a batch beyond either bound
that does not fill the gap is dropped and counted (``dropped_over_budget``), so a peer
that sends maximum-size WRITEs and never the batch in the gap cannot make an end hold
more than its budget (a frame count alone allowed 256 x 4 MiB).

The target end (:class:`TargetSession`) also *holds* READs while it has nothing
to send and answers them when packets arrive, or releases them empty before their
deadline so the initiator's and the kernel's command timeouts (30 s) never fire.
The initiator end (:class:`InitiatorSession`) keeps several READs and WRITEs in flight; the runtimes decide how many.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from fabqual.ipofc import framing

Clock = Callable[[], float]


@dataclass
class SenderStats:
    """Counters of one direction's sending side."""

    packets_queued: int = 0
    packets_sent: int = 0
    frames_sent: int = 0
    empty_frames_sent: int = 0
    dropped_queue_full: int = 0
    dropped_oversize: int = 0


class Sender:
    """Outbound packet queue and batch builder for one direction."""

    def __init__(self, *, queue_limit: int = 8 << 20, max_packet: int = framing.MAX_PACKET, crc: bool = False) -> None:
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.queue_limit = queue_limit
        self.max_packet = max_packet
        self.crc = crc
        self.next_seq = 0
        self.stats = SenderStats()

    def push(self, packet: bytes) -> bool:
        """Queue one packet; False (and counted) if it is empty, too big or the queue is full (tail drop)."""
        if not 1 <= len(packet) <= self.max_packet:
            self.stats.dropped_oversize += 1
            return False
        if self.queued_bytes + len(packet) > self.queue_limit:
            self.stats.dropped_queue_full += 1
            return False
        self.queue.append(packet)
        self.queued_bytes += len(packet)
        self.stats.packets_queued += 1
        return True

    @property
    def pending(self) -> bool:
        """Whether packets wait to be sent."""
        return bool(self.queue)

    def next_frame(self, capacity: int) -> bytes:
        """A frame of at most ``capacity`` bytes: a batch from the queue head, or an empty frame.

        When the head packet does not fit this transfer the frame is empty with MORE
        set (the initiator should use bigger READs); nothing is dropped here, since
        :meth:`push` already refused packets above ``max_packet``. Only non-empty
        frames consume a sequence number.
        """
        overhead = framing.HEADER_SIZE + (framing.CRC_SIZE if self.crc else 0)
        if capacity < overhead:
            raise ValueError(f"tunnel transfer of {capacity} bytes cannot hold a frame header ({overhead} bytes)")
        batch = framing.take_batch(self.queue, capacity, crc=self.crc)
        self.queued_bytes -= sum(len(p) for p in batch)
        data = framing.encode_frame(framing.Frame(self.next_seq, batch, more=bool(self.queue), crc=self.crc))
        if batch:
            self.next_seq = (self.next_seq + 1) % framing.SEQ_MODULUS
            self.stats.frames_sent += 1
            self.stats.packets_sent += len(batch)
        else:
            self.stats.empty_frames_sent += 1
        return data


@dataclass
class ReceiverStats:
    """Counters of one direction's receiving side."""

    frames: int = 0
    empty_frames: int = 0
    packets_delivered: int = 0
    duplicates: int = 0
    late: int = 0
    lost_frames: int = 0
    resyncs: int = 0
    dropped_over_budget: int = 0
    dropped_over_budget_bytes: int = 0


# Batches this far behind the expected sequence cannot be reordering among the at most 16
# commands in flight: the peer restarted or another sender moved our sequence. After this many
# of them in a row the receiver follows the peer (an isolated late retry never triggers it).
RESYNC_MARGIN = 64
RESYNC_AFTER = 4
DEFAULT_REORDER_BYTES = 16 << 20  # 4 x (4 WRITEs in flight x 1 MiB), the initiator's defaults


class Receiver:
    """Restores batch order by sequence number; drops duplicates; skips gaps declared lost."""

    def __init__(
        self,
        clock: Clock,
        *,
        window: int = 256,
        reorder_timeout: float = 0.5,
        max_bytes: int = DEFAULT_REORDER_BYTES,
    ) -> None:
        self.clock = clock
        self.window = window
        self.reorder_timeout = reorder_timeout
        self.max_bytes = max_bytes
        self.expected = 0
        self.pending: dict[int, tuple[tuple[bytes, ...], float]] = {}
        self.pending_bytes = 0
        self.far_behind = 0  # consecutive batches far behind the expected sequence
        self.stats = ReceiverStats()

    def _ahead(self, seq: int) -> int:
        return (seq - self.expected) % framing.SEQ_MODULUS

    def accept(self, frame: framing.Frame) -> list[bytes]:
        """Take one decoded frame; return the packets now deliverable, in order."""
        if not frame.packets:
            self.stats.empty_frames += 1
            return []
        ahead = self._ahead(frame.seq)
        if ahead >= framing.SEQ_MODULUS // 2:
            self.stats.late += 1  # already delivered, or its gap was declared lost
            if framing.SEQ_MODULUS - ahead <= RESYNC_MARGIN:
                self.far_behind = 0
                return []
            self.far_behind += 1
            if self.far_behind < RESYNC_AFTER:
                return []
            self.stats.late -= 1
            self.resync(frame.seq)
            ahead = 0
        self.far_behind = 0
        if frame.seq in self.pending:
            self.stats.duplicates += 1
            return []
        out: list[bytes] = []
        if ahead >= self.window:  # too far ahead: the frames in between are not coming
            self._skip_to((frame.seq - self.window + 1) % framing.SEQ_MODULUS, out)
            ahead = self._ahead(frame.seq)
        size = sum(len(p) for p in frame.packets)
        if ahead and self.pending_bytes + size > self.max_bytes:
            self.stats.dropped_over_budget += 1  # the gap's own batch is never refused: it drains the rest
            self.stats.dropped_over_budget_bytes += size
            return out
        self.stats.frames += 1
        self.pending[frame.seq] = (frame.packets, self.clock())
        self.pending_bytes += size
        self._drain(out)
        return out

    def resync(self, seq: int) -> None:
        """The peer restarted its sequence (a new daemon): expect ``seq`` next, forget what waited."""
        self.pending.clear()
        self.pending_bytes = 0
        self.far_behind = 0
        self.expected = seq % framing.SEQ_MODULUS
        self.stats.resyncs += 1

    def expire(self) -> list[bytes]:
        """Declare gaps lost whose later frames have waited longer than the reorder timeout."""
        out: list[bytes] = []
        now = self.clock()
        while self.pending and self.expected not in self.pending:
            oldest = min(t for _, t in self.pending.values())
            if now - oldest < self.reorder_timeout:
                break
            first = min(self.pending, key=self._ahead)
            self._skip_to(first, out)
            self._drain(out)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`expire` may next have something to do."""
        if not self.pending:
            return None
        return min(t for _, t in self.pending.values()) + self.reorder_timeout

    def _skip_to(self, seq: int, out: list[bytes]) -> None:
        # Jumps over each gap at once: a peer that restarted at a random sequence number is
        # billions away, and stepping one number at a time froze the receiving thread.
        while self.expected != seq:
            target = self._ahead(seq)
            before = [s for s in self.pending if self._ahead(s) < target]
            if not before:
                self.stats.lost_frames += target
                self.expected = seq
                return
            first = min(before, key=self._ahead)
            self.stats.lost_frames += self._ahead(first)
            self._deliver(first, out)

    def _drain(self, out: list[bytes]) -> None:
        while self.expected in self.pending:
            self._deliver(self.expected, out)

    def _deliver(self, seq: int, out: list[bytes]) -> None:
        packets, _ = self.pending.pop(seq)
        self.pending_bytes -= sum(len(p) for p in packets)
        out.extend(packets)
        self.stats.packets_delivered += len(packets)
        self.expected = (seq + 1) % framing.SEQ_MODULUS


@dataclass(frozen=True)
class HeldRead:
    """A READ the target keeps until it has packets or its deadline passes."""

    cmd_id: int
    capacity: int
    deadline: float


class TargetSession:
    """The target end: WRITE payloads in, held READs out. Implements the dispatcher's DataPath."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        hold_time: float = 1.0,
        crc: bool = False,
        queue_limit: int = 8 << 20,
        reorder_timeout: float = 0.5,
        reorder_bytes: int = DEFAULT_REORDER_BYTES,
    ) -> None:
        self.clock = clock
        self.hold_time = hold_time
        self.sender = Sender(queue_limit=queue_limit, crc=crc)
        self.receiver = Receiver(clock, reorder_timeout=reorder_timeout, max_bytes=reorder_bytes)
        self.held: OrderedDict[int, HeldRead] = OrderedDict()
        self.inbound: deque[bytes] = deque()

    # DataPath -------------------------------------------------------------------
    def write(self, payload: bytes) -> None:
        """One WRITE's data-out: a frame whose packets go to the inbound queue (raises CodecError if bad)."""
        frame = framing.decode_frame(payload)
        self.inbound.extend(self.receiver.accept(frame))

    def read(self, cmd_id: int, capacity: int) -> bytes | None:
        """Answer a READ now if packets wait (and no older READ is held), else hold it."""
        if cmd_id in self.held:
            raise ValueError(f"command id {cmd_id} is already held: the ring would complete it twice")
        if self.sender.pending and not self.held:
            return self.sender.next_frame(capacity)
        self.held[cmd_id] = HeldRead(cmd_id, capacity, self.clock() + self.hold_time)
        return None

    # runtime side -----------------------------------------------------------------
    def push(self, packet: bytes) -> bool:
        """An outbound packet from the TUN device."""
        return self.sender.push(packet)

    def completions(self) -> list[tuple[int, bytes]]:
        """Held READs that can complete now: oldest first with packets, or empty once past their deadline."""
        done: list[tuple[int, bytes]] = []
        now = self.clock()
        for cmd_id, held in list(self.held.items()):
            if self.sender.pending or held.deadline <= now:
                del self.held[cmd_id]
                done.append((cmd_id, self.sender.next_frame(held.capacity)))
        return done

    def abort(self, cmd_id: int) -> bool:
        """Forget a held READ the initiator aborted (TMR ABORT TASK); True if it was held."""
        return self.held.pop(cmd_id, None) is not None

    def take_inbound(self) -> list[bytes]:
        """Packets received (in order) and not yet written to the TUN device; expires reorder gaps first."""
        self.inbound.extend(self.receiver.expire())
        out = list(self.inbound)
        self.inbound.clear()
        return out

    def next_deadline(self) -> float | None:
        """The earliest time something must happen without new input (a READ release or a gap expiry)."""
        times = [h.deadline for h in self.held.values()]
        gap = self.receiver.next_deadline()
        if gap is not None:
            times.append(gap)
        return min(times) if times else None


class InitiatorSession:
    """The initiator end: packets to WRITE frames, READ data to packets."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        crc: bool = False,
        queue_limit: int = 8 << 20,
        reorder_timeout: float = 0.5,
        reorder_bytes: int = DEFAULT_REORDER_BYTES,
    ) -> None:
        self.clock = clock
        self.sender = Sender(queue_limit=queue_limit, crc=crc)
        self.receiver = Receiver(clock, reorder_timeout=reorder_timeout, max_bytes=reorder_bytes)

    def push(self, packet: bytes) -> bool:
        """An outbound packet from the TUN device."""
        return self.sender.push(packet)

    def write_frame(self, capacity: int) -> bytes | None:
        """Data-out for the next WRITE, or None when nothing is queued (no empty WRITEs)."""
        return self.sender.next_frame(capacity) if self.sender.pending else None

    def read_done(self, data: bytes) -> tuple[list[bytes], bool]:
        """A completed READ's data-in: deliverable packets, and whether the target has MORE queued."""
        frame = framing.decode_frame(data)
        return self.receiver.accept(frame), frame.more

    def expire(self) -> list[bytes]:
        """Packets released by declaring overdue gaps lost."""
        return self.receiver.expire()
