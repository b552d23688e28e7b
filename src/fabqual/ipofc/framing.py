"""Tunnel framing: many IP packets per SCSI READ/WRITE, with a sequence number per batch.

One frame fills one command's data buffer::

    header (16 bytes, big-endian)
      0  magic "IPFC"
      4  version (1)
      5  flags: bit0 MORE (sender has more queued: issue another READ now),
                bit1 CRC (a CRC-32 of the record area follows the records); other bits reserved
      6  count     number of packet records
      8  seq       batch sequence number (per direction, wraps at 2**32)
     12  total     bytes of the frame: header + records (+ 4 for CRC)
    records, `count` times: BE32 length (1..max_packet), packet, zero padding to 4 bytes
    [CRC-32 (zlib) of the record area, BE32]

Bytes after ``total`` are ignored (WRITEs are padded to whole blocks). Sequence
numbers let the receiver restore order when several commands are in flight in
each direction and count lost batches (research note §8). An empty frame (count 0)
carries the seq the next batch will get and never consumes one.

Decoding is strict: every length is checked before it is used; the original's
unchecked length prefix killed its target (research note §1.7 bug 1).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from fabqual.ipofc.fields import Field, FieldError, Layout

MAGIC = 0x49504643  # "IPFC"
VERSION = 1
FLAG_MORE = 0x01
FLAG_CRC = 0x02
HEADER_SIZE = 16
RECORD_PREFIX = 4
CRC_SIZE = 4
MAX_PACKET = 65536 + 16  # a GSO super-packet with its virtio-net header (tun.py), plus headroom
SEQ_MODULUS = 1 << 32

HEADER = Layout(
    "tunnel frame header",
    HEADER_SIZE,
    (
        Field("magic", 0, size=4),
        Field("version", 4),
        Field("more", 5, shift=0, bits=1),
        Field("crc", 5, shift=1, bits=1),
        Field("count", 6, size=2),
        Field("seq", 8, size=4),
        Field("total", 12, size=4),
    ),
)


REJECT_KINDS = ("truncated", "header", "magic", "version", "total", "record", "padding", "trailing", "crc")


class FramingError(FieldError):
    """A tunnel frame that does not decode; ``truncated`` when bytes are missing rather than wrong.

    ``kind`` (one of :data:`REJECT_KINDS`) says which check refused it, so a receiver can count
    rejected frames by cause.
    """

    def __init__(self, message: str, byte: int, *, kind: str, truncated: bool = False) -> None:
        self.truncated = truncated
        self.kind = "truncated" if truncated else kind
        super().__init__(message, byte)


@dataclass(frozen=True)
class Frame:
    """A decoded batch: its sequence number, packets and flags."""

    seq: int
    packets: tuple[bytes, ...] = ()
    more: bool = False
    crc: bool = False


def record_size(packet_length: int) -> int:
    """Bytes one packet occupies in a frame (length prefix + packet + padding)."""
    return RECORD_PREFIX + ((packet_length + 3) & ~3)


def frame_size(packet_lengths: Sequence[int], *, crc: bool = False) -> int:
    """Total bytes of a frame holding packets of these lengths."""
    return HEADER_SIZE + sum(record_size(n) for n in packet_lengths) + (CRC_SIZE if crc else 0)


def encode_frame(
    frame: Frame,
    *,
    magic: int = MAGIC,
    version: int = VERSION,
    count: int | None = None,
    total: int | None = None,
    lengths: Sequence[int] | None = None,
) -> bytes:
    """Bytes of ``frame``. ``count``, ``total`` and the per-packet ``lengths`` are computed
    unless given, so a fuzzer can write inconsistent ones (the packets' bytes are still
    written in full)."""
    parts: list[bytes] = []
    for i, pkt in enumerate(frame.packets):
        n = len(pkt) if lengths is None else lengths[i]
        parts.append(n.to_bytes(4, "big"))
        parts.append(pkt)
        pad = -len(pkt) & 3
        if pad:
            parts.append(bytes(pad))
    body = b"".join(parts)
    trailer = zlib.crc32(body).to_bytes(4, "big") if frame.crc else b""
    header = HEADER.pack(
        {
            "magic": magic,
            "version": version,
            "more": int(frame.more),
            "crc": int(frame.crc),
            "count": len(frame.packets) if count is None else count,
            "seq": frame.seq,
            "total": HEADER_SIZE + len(body) + len(trailer) if total is None else total,
        }
    )
    return header + body + trailer


def decode_frame(buf: bytes | bytearray | memoryview, *, max_packet: int = MAX_PACKET) -> Frame:
    """Decode one frame from the start of ``buf``, checking every length before using it."""
    view = memoryview(buf)
    if len(view) < HEADER_SIZE:
        raise FramingError(
            f"tunnel frame truncated: {len(view)} bytes, header needs {HEADER_SIZE}",
            0,
            kind="truncated",
            truncated=True,
        )
    try:
        h = HEADER.unpack(view[:HEADER_SIZE])
    except FieldError as err:
        raise FramingError(f"tunnel frame header: {err}", err.byte, kind="header") from None
    if h["magic"] != MAGIC:
        raise FramingError(f"tunnel frame magic 0x{h['magic']:08x} is not 0x{MAGIC:08x} ('IPFC')", 0, kind="magic")
    if h["version"] != VERSION:
        raise FramingError(f"tunnel frame version {h['version']} is not {VERSION}", 4, kind="version")
    total = h["total"]
    tail = CRC_SIZE if h["crc"] else 0
    if total < HEADER_SIZE + tail:
        raise FramingError(f"tunnel frame total length {total} is shorter than its header", 12, kind="total")
    if total > len(view):
        raise FramingError(
            f"tunnel frame total length {total} exceeds the {len(view)} bytes received",
            12,
            kind="total",
            truncated=True,
        )
    end = total - tail
    packets: list[bytes] = []
    pos = HEADER_SIZE
    for index in range(h["count"]):
        if end - pos < RECORD_PREFIX:
            raise FramingError(
                f"tunnel frame: record {index} of {h['count']} starts past the frame end", pos, kind="record"
            )
        length = int.from_bytes(view[pos : pos + RECORD_PREFIX], "big")
        if not 1 <= length <= max_packet:
            raise FramingError(
                f"tunnel frame: record {index} length {length} outside 1..{max_packet}", pos, kind="record"
            )
        start = pos + RECORD_PREFIX
        stop = start + length
        nxt = start + ((length + 3) & ~3)
        if nxt > end:
            raise FramingError(
                f"tunnel frame: record {index} length {length} at offset {pos} runs past the frame end {end}",
                pos,
                kind="record",
            )
        if any(view[stop:nxt]):
            raise FramingError(f"tunnel frame: record {index} padding is not zero", stop, kind="padding")
        packets.append(bytes(view[start:stop]))
        pos = nxt
    if pos != end:
        raise FramingError(
            f"tunnel frame: {end - pos} bytes after the last of {h['count']} records", pos, kind="trailing"
        )
    if tail:
        want = int.from_bytes(view[end:total], "big")
        got = zlib.crc32(view[HEADER_SIZE:end])
        if want != got:
            raise FramingError(
                f"tunnel frame CRC-32 0x{want:08x} does not match the records (0x{got:08x})", end, kind="crc"
            )
    return Frame(h["seq"], tuple(packets), bool(h["more"]), bool(h["crc"]))


def take_batch(queue: deque[bytes], capacity: int, *, crc: bool = False) -> tuple[bytes, ...]:
    """Remove and return as many packets from the head of ``queue`` as fit in a ``capacity``-byte frame.

    A head packet that can never fit is the caller's problem
    (:class:`fabqual.ipofc.session.Sender` drops those before calling).
    """
    room = capacity - HEADER_SIZE - (CRC_SIZE if crc else 0)
    taken: list[bytes] = []
    while queue and record_size(len(queue[0])) <= room and len(taken) < 0xFFFF:
        pkt = queue.popleft()
        room -= record_size(len(pkt))
        taken.append(pkt)
    return tuple(taken)
