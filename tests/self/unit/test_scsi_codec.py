"""SCSI codec: CDB/sense/INQUIRY/VPD/MODE SENSE/REPORT LUNS round trips and strict rejection.

Fixed byte vectors come from two places, named at each test: the byte layouts of
SPC-4/SBC-3 as written out in ``research/ipofc_scsi.md`` §7, and the bytes
benjojo/IPoverFC@91c916d put on the wire (research note §1.3/§1.5), which a
strict decoder must still read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabqual.errors import CodecError
from fabqual.ipofc import scsi
from fabqual.ipofc.fields import Field, FieldError, Layout
from fabqual.testing.strategies import (
    designators,
    inquiry_data,
    mode_pages,
    sense_data,
    valid_cdbs,
)

# --- CDBs --------------------------------------------------------------------------


def test_inquiry_vpd_cdb_bytes() -> None:
    """INQUIRY EVPD=1 page 0x83 alloc 255 encodes as the sg_inq/sg_vpd CDB `12 01 83 00 ff 00`."""
    raw = scsi.encode_cdb(scsi.Opcode.INQUIRY, evpd=1, page_code=0x83, allocation_length=255)
    assert raw == bytes.fromhex("12018300ff00")


def test_decodes_original_read16_and_write16() -> None:
    """The original client's READ(16)/WRITE(16) (random LBA bytes 6..8, 19 blocks) decode to LBA and length."""
    read = bytes.fromhex("88000000000000abcdff000000130000")
    write = bytes.fromhex("8a000000000000abcd00000000130000")
    r, w = scsi.decode_cdb(read), scsi.decode_cdb(write)
    assert (r.name, r["lba"], r["transfer_length"]) == ("READ(16)", 0xABCDFF, 19)
    assert (w.name, w["lba"], w["transfer_length"]) == ("WRITE(16)", 0xABCD00, 19)


@given(valid_cdbs())
def test_valid_cdbs_round_trip(raw: bytes) -> None:
    """Decoding any well-formed CDB and re-encoding its fields gives the same bytes."""
    cdb = scsi.decode_cdb(raw)
    assert scsi.encode_cdb(cdb.opcode, **{k: v for k, v in cdb.fields.items() if k != "opcode"}) == raw


@given(valid_cdbs(), st.data())
def test_any_reserved_bit_is_rejected_with_its_position(raw: bytes, data: st.DataObject) -> None:
    """Setting any reserved bit of a well-formed CDB makes decode fail, naming that byte and bit."""
    layout = scsi.CDB_LAYOUTS[raw[0]]
    spots = [(i, b) for i, mask in enumerate(layout.reserved) for b in range(8) if mask >> b & 1]
    if not spots:
        return
    byte, bit = data.draw(st.sampled_from(spots))
    bad = bytearray(raw)
    bad[byte] |= 1 << bit
    with pytest.raises(FieldError) as err:
        scsi.decode_cdb(bytes(bad))
    assert (err.value.byte, err.value.bit) == (byte, bit)


@pytest.mark.parametrize("opcode", sorted(scsi.CDB_LAYOUTS))
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_cdb_length_is_rejected(opcode: int, delta: int) -> None:
    """A CDB one byte shorter or longer than its opcode's layout is rejected, not guessed at."""
    raw = scsi.encode_cdb(opcode)
    raw = raw[:-1] if delta < 0 else raw + b"\0"
    with pytest.raises(FieldError, match="must be"):
        scsi.decode_cdb(raw)


def test_unknown_opcode_and_empty_cdb() -> None:
    """An opcode the codec does not implement raises UnknownOpcodeError; an empty CDB a FieldError."""
    with pytest.raises(scsi.UnknownOpcodeError, match="0x25"):
        scsi.decode_cdb(bytes.fromhex("25000000000000000000"))  # READ CAPACITY(10)
    with pytest.raises(FieldError, match="empty"):
        scsi.decode_cdb(b"")


def test_field_value_too_wide_is_rejected() -> None:
    """Encoding a value wider than its field fails with the field name instead of spilling into neighbours."""
    with pytest.raises(FieldError, match="allocation_length=65536"):
        scsi.encode_cdb(scsi.Opcode.INQUIRY, allocation_length=65536)
    with pytest.raises(FieldError, match="no field"):
        scsi.encode_cdb(scsi.Opcode.INQUIRY, nonsense=1)


def test_group_length_matches_every_layout() -> None:
    """Every implemented CDB has the length its opcode group implies (what the kernel copies into the ring)."""
    for opcode, layout in scsi.CDB_LAYOUTS.items():
        assert scsi.group_length(opcode) == layout.length, layout.name
    assert scsi.group_length(0x7F) is None


def test_layout_rejects_overlapping_table_errors() -> None:
    """A field table with a duplicate name or a field past the end is a programming error caught at import."""
    with pytest.raises(ValueError, match="duplicate"):
        Layout("x", 2, (Field("a", 0), Field("a", 1)))
    with pytest.raises(ValueError, match="runs past"):
        Layout("x", 2, (Field("a", 1, size=2),))


# --- sense ---------------------------------------------------------------------------


def test_invalid_field_in_cdb_sense_bytes() -> None:
    """ILLEGAL REQUEST / INVALID FIELD IN CDB at byte 1 bit 1 gives the SPC-4 fixed layout, SKSV + C/D + BPV."""
    sense = scsi.illegal_request(scsi.INVALID_FIELD_IN_CDB, byte=1, bit=1)
    assert sense.encode() == bytes.fromhex("70 00 05 00000000 0a 00000000 24 00 00 c9 0001")


def test_decodes_original_sense() -> None:
    """The original's 18-byte sense (70/05/24/00, research note §1.5) decodes to key 5 ASC 0x24."""
    raw = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10]) + bytes(4) + bytes([0x24, 0]) + bytes(4)
    sense = scsi.decode_sense(raw)
    assert (sense.key, sense.additional_sense) == (scsi.SenseKey.ILLEGAL_REQUEST, (0x24, 0))


@given(sense_data(), st.integers(0, 78))
def test_sense_round_trip(sense: scsi.Sense, padding: int) -> None:
    """Any fixed sense record survives encode/decode, also inside a larger zero-padded sense buffer (TCMU: 96)."""
    assert scsi.decode_sense(sense.encode() + bytes(padding)) == sense


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes(7), "at least 8"),
        (bytes([0x72]) + bytes(17), "not fixed format"),
        (bytes([0x70, 0, 5, 0, 0, 0, 0, 6]) + bytes(10), "additional length 6"),
        (bytes([0x70, 0, 5, 0, 0, 0, 0, 20]) + bytes(10), "truncated"),
    ],
    ids=["short", "descriptor-format", "no-asc", "truncated"],
)
def test_bad_sense_is_rejected(raw: bytes, message: str) -> None:
    """Sense data that is short, descriptor-format, too small to hold ASC/ASCQ or truncated is refused."""
    with pytest.raises(CodecError, match=message):
        scsi.decode_sense(raw)


def test_sense_wrong_additional_length_only_when_asked() -> None:
    """The encoder writes the computed additional length unless told otherwise (for fuzzing receivers)."""
    assert scsi.Sense(5).encode()[7] == 10
    assert scsi.Sense(5).encode(additional_length=3)[7] == 3


def test_sense_field_pointer_beyond_16_bits_is_dropped() -> None:
    """A parameter-list offset that cannot fit the 16-bit field pointer yields sense without SKSV, not an error."""
    sense = scsi.illegal_request(scsi.INVALID_FIELD_IN_PARAMETER_LIST, byte=70000, in_cdb=False)
    assert (sense.sksv, sense.field_pointer) == (0, 0)


# --- INQUIRY / VPD ------------------------------------------------------------------


def test_default_inquiry_is_scanner_with_fabqual_strings() -> None:
    """Standard INQUIRY: PDT 6, SPC-4, HISUP, RDF 2, additional length 31, CMDQUE, 'FABQUAL ' / 'IPoFC tunnel'."""
    raw = scsi.StandardInquiry().encode()
    assert raw == bytes.fromhex("0600061 21f000002".replace(" ", "")) + b"FABQUAL IPoFC tunnel    0001"


def test_decodes_original_inquiry() -> None:
    """The original's 36 INQUIRY bytes (research note §1.5) decode to scanner / BENJOJO / Network Card lol / 350."""
    raw = bytes.fromhex("06000612 1f000102".replace(" ", "")) + b"BENJOJO Network Card lol350 "
    inq = scsi.decode_inquiry(raw)
    assert (inq.device_type, inq.vendor, inq.product, inq.revision) == (6, "BENJOJO", "Network Card lol", "350")


@given(inquiry_data())
def test_inquiry_round_trip(inq: scsi.StandardInquiry) -> None:
    """Any standard INQUIRY record survives encode/decode."""
    assert scsi.decode_inquiry(inq.encode()) == inq


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:35], "at least 36"),
        (lambda b: b[:4] + b"\x10" + b[5:], "additional length 16"),
        (lambda b: b[:3] + b"\x11" + b[4:], "response data format 1"),
        (lambda b: b[:8] + b"\x00" + b[9:], "not printable"),
    ],
    ids=["short", "additional-length", "rdf", "vendor-nul"],
)
def test_bad_inquiry_is_rejected(mutate: Callable[[bytes], bytes], message: str) -> None:
    """INQUIRY data that is short, inconsistent or carries non-ASCII ids is refused."""
    with pytest.raises(CodecError, match=message):
        scsi.decode_inquiry(mutate(scsi.StandardInquiry().encode()))


def test_inquiry_ids_must_fit() -> None:
    """An over-long or non-ASCII vendor string is refused at encode time."""
    with pytest.raises(CodecError, match="at most 8"):
        scsi.StandardInquiry(vendor="FABQUALXY").encode()
    with pytest.raises(CodecError, match="printable ASCII"):
        scsi.StandardInquiry(product="tünnel").encode()


@given(st.lists(designators(), max_size=5))
def test_device_identification_round_trip(items: list[scsi.Designator]) -> None:
    """VPD 0x83 built from any designators decodes back to the same page and designators."""
    page = scsi.device_identification_vpd(items)
    decoded = scsi.decode_vpd(page.encode())
    assert decoded == page
    assert scsi.decode_designators(decoded.payload) == items


def test_vpd_page_length_and_designator_overrun_are_rejected() -> None:
    """A VPD page length that disagrees with the bytes, or a designator that overruns the page, is refused."""
    page = scsi.serial_number_vpd("abc")
    assert page.encode() == bytes.fromhex("06800003") + b"abc"
    with pytest.raises(CodecError, match="says 4"):
        scsi.decode_vpd(page.encode(page_length=4))
    bad = scsi.Designator(1, b"abcd").encode(designator_length=9)
    with pytest.raises(CodecError, match="claims 9"):
        scsi.decode_designators(bad)
    with pytest.raises(CodecError, match="ascending"):
        scsi.supported_pages_vpd([0x80, 0x00])


# --- MODE SENSE / REPORT LUNS ------------------------------------------------------


@given(st.lists(mode_pages(), max_size=4), st.binary(max_size=16), st.integers(0, 255), st.integers(0, 255))
def test_mode_parameters_round_trip(pages: list[scsi.ModePage], bd: bytes, medium: int, dsp: int) -> None:
    """Mode parameter lists survive encode/decode in both the (6) and (10) header forms."""
    params = scsi.ModeParameters(tuple(pages), medium, dsp, bd)
    assert scsi.decode_mode10(params.encode10()) == params
    six: Any
    try:
        six = params.encode6()
    except CodecError:
        return  # too long for the one-byte MODE DATA LENGTH: refusing is the right answer
    assert scsi.decode_mode6(six) == params


def test_bad_mode_parameters_are_rejected() -> None:
    """A wrong MODE DATA LENGTH or a page length past the end is refused."""
    params = scsi.ModeParameters((scsi.ModePage(0x0A, bytes(10)),))
    with pytest.raises(CodecError, match="says"):
        scsi.decode_mode6(params.encode6(mode_data_length=5))
    overrun = bytes([5, 0, 0, 0]) + scsi.ModePage(0x0A, b"").encode(page_length=9)
    with pytest.raises(CodecError, match="claims 9"):
        scsi.decode_mode6(overrun)


@given(st.lists(st.integers(0, 255), max_size=16))
def test_lun_list_round_trip(luns: list[int]) -> None:
    """REPORT LUNS data survives encode/decode."""
    assert scsi.decode_lun_list(scsi.LunList(tuple(luns)).encode()) == scsi.LunList(tuple(luns))


def test_bad_lun_list_is_rejected() -> None:
    """A LUN LIST LENGTH that is not a multiple of 8 or disagrees with the entries is refused."""
    with pytest.raises(CodecError, match="does not match"):
        scsi.decode_lun_list(scsi.LunList((0,)).encode(list_length=16))


# --- never crash ---------------------------------------------------------------------


@given(st.binary(max_size=80))
def test_decoders_raise_only_codec_errors(raw: bytes) -> None:
    """Every decoder, fed arbitrary bytes, returns a record or raises CodecError — nothing else."""
    for decode in (
        scsi.decode_cdb,
        scsi.decode_sense,
        scsi.decode_inquiry,
        scsi.decode_vpd,
        scsi.decode_designators,
        scsi.decode_mode_pages,
        scsi.decode_mode6,
        scsi.decode_mode10,
        scsi.decode_lun_list,
    ):
        with contextlib.suppress(CodecError):
            decode(raw)
