"""Hypothesis strategies for the IPoFC SCSI codec and tunnel framing, and the fuzz profiles.

Test-only: the runtime never imports this module (nor Hypothesis). Importing it
registers two settings profiles and loads the one named by the environment variable
``FABQUAL_HYPOTHESIS_PROFILE``:

* ``ci`` (default): derandomized, a few hundred examples per property, seconds per run.
* ``lab``: 100k examples per property and long state-machine runs, for the rack.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fabqual.errors import FabqualError
from fabqual.ipofc import framing, scsi
from fabqual.ipofc.fields import Layout
from fabqual.testing.shell_words import CANARY

PROFILE_ENV = "FABQUAL_HYPOTHESIS_PROFILE"

settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    deadline=None,
    stateful_step_count=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "lab",
    max_examples=100_000,
    deadline=None,
    stateful_step_count=200,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def load_profile() -> str:
    """Load the profile named by ``FABQUAL_HYPOTHESIS_PROFILE`` (default ``ci``) and return its name."""
    name = os.environ.get(PROFILE_ENV, "ci")
    if name not in ("ci", "lab"):
        raise FabqualError(f"{PROFILE_ENV}={name!r} is not a fabqual Hypothesis profile: use 'ci' or 'lab'")
    settings.load_profile(name)
    return name


PROFILE = load_profile()


def stateful_settings() -> settings:
    """Settings for state machines: fewer, longer runs than the per-example profiles."""
    return settings(max_examples={"ci": 60, "lab": 5000}[PROFILE])


# --- SCSI -------------------------------------------------------------------------


@st.composite
def _layout_values(draw: st.DrawFn, layout: Layout) -> dict[str, int]:
    return {f.name: draw(st.integers(0, f.maximum)) for f in layout.fields if f.name != "opcode"}


def valid_cdbs(opcodes: list[int] | None = None) -> st.SearchStrategy[bytes]:
    """Well-formed CDBs of the implemented opcodes: right length, reserved bits zero, any field values."""
    codes = sorted(scsi.CDB_LAYOUTS) if opcodes is None else opcodes
    return st.sampled_from(codes).flatmap(
        lambda op: _layout_values(scsi.CDB_LAYOUTS[op]).map(lambda v: scsi.encode_cdb(op, **v))
    )


@st.composite
def _mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """One targeted mutation of a valid CDB, so shrinking points at a single field."""
    raw = bytearray(draw(base))
    how = draw(st.sampled_from(["flip", "truncate", "extend", "byte"]))
    if how == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        del raw[draw(st.integers(0, len(raw) - 1)) :]
    elif how == "extend":
        raw += draw(st.binary(min_size=1, max_size=8))
    else:
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] = draw(st.integers(0, 255))
    return bytes(raw)


def cdbs() -> st.SearchStrategy[bytes]:
    """Anything a SCSI initiator could send as a CDB: valid, mutated-valid and random bytes."""
    random_cdbs = st.integers(0, 255).flatmap(
        lambda op: st.binary(min_size=0, max_size=31).map(lambda rest: bytes([op]) + rest)
    )
    return st.one_of(valid_cdbs(), _mutated(valid_cdbs()), random_cdbs, st.binary(max_size=32))


def sense_data() -> st.SearchStrategy[scsi.Sense]:
    """Fixed-format sense records with every field anywhere in its range."""
    fields = {f.name: st.integers(0, f.maximum) for f in scsi.SENSE_LAYOUT.fields}
    fields["response_code"] = st.sampled_from(scsi.SENSE_RESPONSE_CODES)
    fields.pop("additional_length")
    fields["key"] = fields.pop("sense_key")
    return st.fixed_dictionaries(fields).map(lambda v: scsi.Sense(**v))


_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8)


def inquiry_data() -> st.SearchStrategy[scsi.StandardInquiry]:
    """Standard INQUIRY records with any header bits and printable, trailing-space-free ids."""
    header: dict[str, st.SearchStrategy[Any]] = {
        f.name: st.integers(0, f.maximum)
        for f in scsi.INQUIRY_LAYOUT.fields
        if f.name not in ("additional_length", "response_data_format")
    }
    ident: dict[str, st.SearchStrategy[Any]] = {
        "vendor": _printable.map(str.rstrip),
        "product": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16).map(str.rstrip),
        "revision": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4).map(str.rstrip),
    }
    return st.fixed_dictionaries({**header, **ident}).map(lambda v: scsi.StandardInquiry(**v))


def mode_pages() -> st.SearchStrategy[scsi.ModePage]:
    """Mode pages in page_0 or sub_page format."""
    page0 = st.builds(scsi.ModePage, st.integers(0, 0x3E), st.binary(max_size=64), st.just(0), st.integers(0, 1))
    sub = st.builds(
        scsi.ModePage, st.integers(0, 0x3E), st.binary(max_size=64), st.integers(1, 0xFF), st.integers(0, 1)
    )
    return st.one_of(page0, sub)


def designators() -> st.SearchStrategy[scsi.Designator]:
    """Designation descriptors of VPD page 0x83."""
    return st.builds(
        scsi.Designator,
        st.integers(0, 15),
        st.binary(max_size=64),
        code_set=st.integers(0, 15),
        association=st.integers(0, 3),
        protocol_identifier=st.integers(0, 15),
        piv=st.integers(0, 1),
    )


# --- tunnel -------------------------------------------------------------------------


def packets(min_size: int = 1, max_size: int = 1600) -> st.SearchStrategy[bytes]:
    """IP-packet-sized byte strings (content is opaque to the tunnel)."""
    return st.binary(min_size=min_size, max_size=max_size)


def tunnel_frames(max_packets: int = 16, max_packet_size: int = 1600) -> st.SearchStrategy[framing.Frame]:
    """Tunnel frames with any sequence number, flags and a batch of packets."""
    return st.builds(
        framing.Frame,
        seq=st.integers(0, framing.SEQ_MODULUS - 1),
        packets=st.lists(packets(max_size=max_packet_size), max_size=max_packets).map(tuple),
        more=st.booleans(),
        crc=st.booleans(),
    )


# ---- hostile text for topology fields (see fabqual.testing.shell_words) ----

# Each atom that can do harm in a shell ends in the canary, so what a builder did with it can be read
# back from the command line; the others try the grammars (paths, non-ASCII, option-like, control).
_HOSTILE_ATOMS = tuple(f"{meta}{CANARY}" for meta in (";", "&&", "|", ">", "<", "$(", "`", "\n", " ", "\t", "'", '"'))
_HOSTILE_ATOMS += (
    f"$({CANARY})",
    f"`{CANARY}`",
    f"*{CANARY}",
    f"?{CANARY}",
    f"[{CANARY}]",
    f"{{{CANARY}}}",
    f"~{CANARY}",
)
_HOSTILE_ATOMS += (f"#{CANARY}", f"\\{CANARY}", f"!{CANARY}", "../", "/..", "..", "/", "-", "é", "\u00a0", "\x00", "\r")
_PLAIN = "abcnvme0123._-:"


def hostile_strings(like: str = "") -> st.SearchStrategy[str]:
    """Strings built from shell metacharacters, ``$()``, backticks, newlines, ``../``, spaces and
    non-ASCII around plain name characters: what a careless or malicious topology could hold.

    With ``like`` (a good value), four in five are that value with the hostile part spliced in
    or appended, so they get past checks on its start (``/dev/nullb``, ``nqn.``) to deeper code.
    """
    piece = st.one_of(st.sampled_from(_HOSTILE_ATOMS), st.text(alphabet=_PLAIN, min_size=1, max_size=6))
    bare = st.lists(piece, min_size=1, max_size=5).map("".join).filter(lambda s: CANARY in s or ".." in s or "/" in s)
    if not like:
        return bare
    ways = {
        "bare": bare,
        "spliced": st.tuples(bare, st.integers(0, len(like))).map(lambda h: like[: h[1]] + h[0] + like[h[1] :]),
        "appended": bare.map(lambda h: like + h),
    }
    return st.sampled_from(("bare", "spliced", "spliced", "appended", "appended")).flatmap(ways.__getitem__)


# --- WRITE data-out for the live fuzz -------------------------------------------------

FRAME_KINDS = ("valid", "truncated", "lying_length", "wrong_count", "bad_crc", "garbage")


def _nonzero_packets(max_packets: int, max_size: int) -> st.SearchStrategy[tuple[bytes, ...]]:
    # No zero bytes: a record length that lies shorter then always leaves non-zero "padding" or a
    # non-zero "next length" behind it, so every lying frame is invalid whatever the draw.
    byte = st.integers(1, 255)
    packet = st.lists(byte, min_size=1, max_size=max_size).map(bytes)
    return st.lists(packet, max_size=max_packets).map(tuple)


@st.composite
def data_out_frames(draw: st.DrawFn, max_packets: int = 8, max_packet_size: int = 1600) -> tuple[str, bytes]:
    """``(kind, bytes)``: WRITE data-out as a tunnel frame, valid or broken in one of FRAME_KINDS' ways.

    Every broken kind is broken for certain, whatever else is drawn (the live fuzz's oracle relies
    on it): ``truncated`` claims a total beyond the bytes sent (the WRITE is padded to 512-byte
    blocks, so the claim is past the padding too), ``lying_length`` gives one record a length of 0,
    past the frame's end or short of its packet, ``wrong_count`` a count that is not the records',
    ``bad_crc`` one flipped CRC bit, ``garbage`` anything without the magic.
    """
    kind = draw(st.sampled_from(FRAME_KINDS))
    seq = draw(st.integers(0, framing.SEQ_MODULUS - 1))
    crc = draw(st.booleans()) or kind == "bad_crc"
    packets = draw(_nonzero_packets(max_packets, max_packet_size))
    if kind in ("lying_length",) and not packets:
        packets = (b"\x01" * draw(st.integers(1, max_packet_size)),)
    frame = framing.Frame(seq, packets, more=draw(st.booleans()), crc=crc)
    if kind == "valid":
        return kind, framing.encode_frame(frame)
    if kind == "truncated":
        size = len(framing.encode_frame(frame))
        claimed = -(-size // 512) * 512 + draw(st.integers(1, 1 << 20))
        return kind, framing.encode_frame(frame, total=claimed)
    if kind == "lying_length":
        index = draw(st.integers(0, len(packets) - 1))
        real = len(packets[index])
        lie = draw(
            st.sampled_from(
                [0, real + draw(st.integers(4, 1 << 16))]
                + ([real - draw(st.integers(1, real - 1))] if real > 1 else [])
            )
        )
        lengths = [len(p) for p in packets]
        lengths[index] = lie
        return kind, framing.encode_frame(frame, lengths=lengths)
    if kind == "wrong_count":
        count = draw(st.integers(0, 0xFFFF).filter(lambda c: c != len(packets)))
        return kind, framing.encode_frame(frame, count=count)
    if kind == "bad_crc":
        flipped = bytearray(framing.encode_frame(frame))
        flipped[-1 - draw(st.integers(0, 3))] ^= 1 << draw(st.integers(0, 7))
        return kind, bytes(flipped)
    raw = draw(st.binary(min_size=0, max_size=4096))
    if raw[:4] == framing.MAGIC.to_bytes(4, "big"):
        raw = b"JUNK" + raw[4:]
    return kind, raw
