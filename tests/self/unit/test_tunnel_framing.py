"""Tunnel framing: exact layout, round trips, and rejection of every inconsistent length or flag."""

from __future__ import annotations

import contextlib
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabqual.errors import CodecError
from fabqual.ipofc import framing
from fabqual.ipofc.framing import Frame, FramingError, decode_frame, encode_frame
from fabqual.testing.strategies import packets, tunnel_frames


def test_layout_bytes() -> None:
    """A 2-packet frame is: 'IPFC', v1, flags, count 2, seq, total, then BE32 length + packet + zero pad."""
    raw = encode_frame(Frame(0x01020304, (b"abc", b"hello"), more=True))
    assert raw == (
        b"IPFC" + bytes([1, 0x01]) + (2).to_bytes(2, "big") + bytes([1, 2, 3, 4]) + (36).to_bytes(4, "big")
        + (3).to_bytes(4, "big") + b"abc\0"
        + (5).to_bytes(4, "big") + b"hello\0\0\0"
    )  # fmt: skip
    assert framing.frame_size([3, 5]) == len(raw) == 36


@given(tunnel_frames(), st.binary(max_size=600))
def test_round_trip(frame: Frame, trailer: bytes) -> None:
    """Any frame decodes back to itself, also followed by block padding or stale bytes (ignored past total)."""
    assert decode_frame(encode_frame(frame) + trailer) == frame


@given(tunnel_frames(), st.data())
def test_every_truncation_is_rejected(frame: Frame, data: st.DataObject) -> None:
    """Cutting a frame anywhere before its end is refused, and cuts that lose bytes are flagged as truncated."""
    raw = encode_frame(frame)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(FramingError) as err:
        decode_frame(raw[:cut])
    assert err.value.truncated


@given(tunnel_frames().filter(lambda f: f.packets), st.data())
def test_wrong_length_prefix_is_never_accepted_as_the_frame(frame: Frame, data: st.DataObject) -> None:
    """A length prefix that lies (the original trusted it and crashed) never decodes to the sent frame;
    it usually raises, and never raises anything but CodecError."""
    i = data.draw(st.integers(0, len(frame.packets) - 1))
    true_len = len(frame.packets[i])
    wrong = data.draw(st.integers(0, 2**32 - 1).filter(lambda n: n != true_len))
    lengths = [len(p) for p in frame.packets]
    lengths[i] = wrong
    raw = encode_frame(frame, lengths=lengths)
    with contextlib.suppress(CodecError):
        assert decode_frame(raw) != frame


@given(tunnel_frames(), st.integers(0, 0xFFFF))
def test_wrong_count_is_rejected(frame: Frame, count: int) -> None:
    """A COUNT that disagrees with the records is refused (records past the end, or bytes left over)."""
    if count == len(frame.packets):
        return
    with pytest.raises(FramingError):
        decode_frame(encode_frame(frame, count=count))


@given(tunnel_frames(), st.integers(0, 2**32 - 1))
def test_wrong_total_is_rejected(frame: Frame, total: int) -> None:
    """A TOTAL that disagrees with the records is refused, even when the buffer is long enough."""
    right = framing.frame_size([len(p) for p in frame.packets], crc=frame.crc)
    if total == right:
        return
    with pytest.raises(FramingError):
        decode_frame(encode_frame(frame, total=total) + bytes(64))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"IPFD" + b[4:], "magic"),
        (lambda b: b[:4] + b"\x02" + b[5:], "version 2"),
        (lambda b: b[:5] + b"\x04" + b[6:], "reserved bit 2 of byte 5"),
        (lambda b: b[:16] + (0).to_bytes(4, "big") + b[20:], "length 0"),
        (lambda b: b[:23] + b"\x01" + b[24:], "padding"),
    ],
    ids=["magic", "version", "reserved-flag", "zero-length", "padding"],
)
def test_bad_header_fields_are_rejected(mutate: object, message: str) -> None:
    """Wrong magic/version, a reserved flag bit, a zero-length record and non-zero padding are refused by name."""
    raw = encode_frame(Frame(1, (b"abc",)))
    with pytest.raises(FramingError, match=message):
        decode_frame(mutate(raw))  # type: ignore[operator]


def test_oversize_record_is_rejected() -> None:
    """A record longer than max_packet is refused before any copy is made."""
    raw = encode_frame(Frame(1, (b"x" * 2000,)))
    decode_frame(raw, max_packet=2000)
    with pytest.raises(FramingError, match=r"outside 1\.\.1999"):
        decode_frame(raw, max_packet=1999)


@given(tunnel_frames(max_packets=4).filter(lambda f: f.packets), st.data())
def test_crc_catches_any_flipped_record_bit(frame: Frame, data: st.DataObject) -> None:
    """With the CRC flag, flipping any bit in the record area makes the frame fail to decode."""
    raw = bytearray(encode_frame(Frame(frame.seq, frame.packets, crc=True)))
    pos = data.draw(st.integers(framing.HEADER_SIZE, len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(FramingError):
        decode_frame(bytes(raw))


@given(st.lists(packets(max_size=3000), max_size=40), st.integers(framing.HEADER_SIZE + 8, 20000), st.booleans())
def test_take_batch_fills_but_never_overflows(pkts: list[bytes], capacity: int, crc: bool) -> None:
    """take_batch takes a queue prefix whose frame fits the capacity and stops only when the next one would not."""
    queue = deque(pkts)
    batch = framing.take_batch(queue, capacity, crc=crc)
    assert list(batch) + list(queue) == pkts
    size = framing.frame_size([len(p) for p in batch], crc=crc)
    assert size <= capacity
    if queue:
        assert size + framing.record_size(len(queue[0])) > capacity


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_errors(raw: bytes) -> None:
    """Random bytes decode to a frame or raise CodecError; nothing else escapes."""
    with contextlib.suppress(CodecError):
        decode_frame(raw)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_valid_header(body: bytes) -> None:
    """Random record areas behind a plausible header decode or raise CodecError, nothing else."""
    header = framing.HEADER.pack({"magic": framing.MAGIC, "version": 1, "count": 3, "seq": 0, "total": 16 + len(body)})
    with contextlib.suppress(CodecError):
        decode_frame(header + body)
