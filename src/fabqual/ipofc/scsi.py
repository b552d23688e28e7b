"""SCSI codec for the IPoFC target: CDBs, sense data, INQUIRY/VPD, MODE SENSE, REPORT LUNS.

Pure and stdlib-only (it runs in the lab guests). CDBs are field tables
(:class:`fabqual.ipofc.fields.Layout`); encoders fill computed fields (lengths) only
when the caller does not give them, so a fuzzer can send wrong ones; decoders are
strict and raise :class:`fabqual.errors.CodecError` (or its :class:`FieldError`
subclass, which carries the byte/bit position for the sense field pointer).
Byte layouts follow SPC-4/SBC-3 as summarised in ``research/ipofc_scsi.md`` §7.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from fabqual.errors import CodecError
from fabqual.ipofc.fields import Field, FieldError, Layout

# --- status, sense keys, additional sense codes ------------------------------------


class Status(enum.IntEnum):
    """SAM status byte values (anything else is invalid on the wire)."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class SenseKey(enum.IntEnum):
    """Sense keys (SPC-4 table 27)."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


@dataclass(frozen=True)
class AdditionalSense:
    """An ASC/ASCQ pair and its SPC name."""

    asc: int
    ascq: int
    text: str


NO_ADDITIONAL_SENSE = AdditionalSense(0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION")
PARAMETER_LIST_LENGTH_ERROR = AdditionalSense(0x1A, 0x00, "PARAMETER LIST LENGTH ERROR")
INVALID_COMMAND_OPERATION_CODE = AdditionalSense(0x20, 0x00, "INVALID COMMAND OPERATION CODE")
LBA_OUT_OF_RANGE = AdditionalSense(0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE")
INVALID_FIELD_IN_CDB = AdditionalSense(0x24, 0x00, "INVALID FIELD IN CDB")
LOGICAL_UNIT_NOT_SUPPORTED = AdditionalSense(0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED")
INVALID_FIELD_IN_PARAMETER_LIST = AdditionalSense(0x26, 0x00, "INVALID FIELD IN PARAMETER LIST")
WRITE_PROTECTED = AdditionalSense(0x27, 0x00, "WRITE PROTECTED")
POWER_ON_RESET = AdditionalSense(0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED")
SAVING_PARAMETERS_NOT_SUPPORTED = AdditionalSense(0x39, 0x00, "SAVING PARAMETERS NOT SUPPORTED")
INTERNAL_TARGET_FAILURE = AdditionalSense(0x44, 0x00, "INTERNAL TARGET FAILURE")

# --- CDBs ---------------------------------------------------------------------------


class Opcode(enum.IntEnum):
    """Operation codes the codec knows."""

    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    INQUIRY = 0x12
    MODE_SENSE_6 = 0x1A
    READ_10 = 0x28
    WRITE_10 = 0x2A
    MODE_SENSE_10 = 0x5A
    READ_16 = 0x88
    WRITE_16 = 0x8A
    REPORT_LUNS = 0xA0


def _control(offset: int) -> tuple[Field, ...]:
    """CONTROL byte: vendor bits 7:6, NACA bit 2, obsolete LINK bit 0; bits 5:3 and 1 reserved."""
    return (
        Field("vendor", offset, shift=6, bits=2),
        Field("naca", offset, shift=2, bits=1),
        Field("link", offset, shift=0, bits=1),
    )


def _cdb(name: str, length: int, *fields: Field) -> Layout:
    return Layout(name, length, (Field("opcode", 0), *fields, *_control(length - 1)))


def _rw10(name: str, protect: str, read: bool) -> Layout:
    flags = [Field(protect, 1, shift=5, bits=3), Field("dpo", 1, shift=4, bits=1), Field("fua", 1, shift=3, bits=1)]
    if read:
        flags.append(Field("rarc", 1, shift=2, bits=1))
    return _cdb(
        name,
        10,
        *flags,
        Field("lba", 2, size=4),
        Field("group", 6, shift=0, bits=5),
        Field("transfer_length", 7, size=2),
    )


def _rw16(name: str, protect: str, read: bool) -> Layout:
    flags = [Field(protect, 1, shift=5, bits=3), Field("dpo", 1, shift=4, bits=1), Field("fua", 1, shift=3, bits=1)]
    if read:
        flags.append(Field("rarc", 1, shift=2, bits=1))
    return _cdb(
        name,
        16,
        *flags,
        Field("dld2", 1, shift=0, bits=1),
        Field("lba", 2, size=8),
        Field("transfer_length", 10, size=4),
        Field("dld", 14, shift=6, bits=2),
        Field("group", 14, shift=0, bits=6),
    )


CDB_LAYOUTS: dict[int, Layout] = {
    Opcode.TEST_UNIT_READY: _cdb("TEST UNIT READY", 6),
    Opcode.REQUEST_SENSE: _cdb("REQUEST SENSE", 6, Field("desc", 1, bits=1), Field("allocation_length", 4)),
    Opcode.INQUIRY: _cdb(
        "INQUIRY",
        6,
        Field("evpd", 1, shift=0, bits=1),
        Field("cmddt", 1, shift=1, bits=1),
        Field("page_code", 2),
        Field("allocation_length", 3, size=2),
    ),
    Opcode.MODE_SENSE_6: _cdb(
        "MODE SENSE(6)",
        6,
        Field("dbd", 1, shift=3, bits=1),
        Field("pc", 2, shift=6, bits=2),
        Field("page_code", 2, shift=0, bits=6),
        Field("subpage_code", 3),
        Field("allocation_length", 4),
    ),
    Opcode.MODE_SENSE_10: _cdb(
        "MODE SENSE(10)",
        10,
        Field("llbaa", 1, shift=4, bits=1),
        Field("dbd", 1, shift=3, bits=1),
        Field("pc", 2, shift=6, bits=2),
        Field("page_code", 2, shift=0, bits=6),
        Field("subpage_code", 3),
        Field("allocation_length", 7, size=2),
    ),
    Opcode.READ_10: _rw10("READ(10)", "rdprotect", read=True),
    Opcode.WRITE_10: _rw10("WRITE(10)", "wrprotect", read=False),
    Opcode.READ_16: _rw16("READ(16)", "rdprotect", read=True),
    Opcode.WRITE_16: _rw16("WRITE(16)", "wrprotect", read=False),
    Opcode.REPORT_LUNS: _cdb("REPORT LUNS", 12, Field("select_report", 2), Field("allocation_length", 6, size=4)),
}

READ_OPCODES = frozenset({Opcode.READ_10, Opcode.READ_16})
WRITE_OPCODES = frozenset({Opcode.WRITE_10, Opcode.WRITE_16})


class UnknownOpcodeError(CodecError):
    """The CDB's operation code is not one this codec (and so the target) implements."""

    def __init__(self, opcode: int) -> None:
        self.opcode = opcode
        super().__init__(f"unsupported SCSI operation code 0x{opcode:02x}")


def group_length(opcode: int) -> int | None:
    """CDB length implied by the opcode group (``op >> 5``); None for variable/vendor groups."""
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(opcode >> 5)


@dataclass(frozen=True)
class Cdb:
    """A decoded CDB: its operation code and every field of its layout."""

    opcode: int
    fields: Mapping[str, int]

    @property
    def layout(self) -> Layout:
        return CDB_LAYOUTS[self.opcode]

    @property
    def name(self) -> str:
        return self.layout.name

    def __getitem__(self, name: str) -> int:
        return self.fields[name]


def encode_cdb(opcode: int, **fields: int) -> bytes:
    """Bytes of the CDB ``opcode`` with ``fields`` set (all others zero).

    Values are checked only against their field width, never for meaning, so a
    fuzzer can build a well-formed CDB that asks for something invalid.
    """
    layout = CDB_LAYOUTS.get(opcode)
    if layout is None:
        raise UnknownOpcodeError(opcode)
    return layout.pack({"opcode": opcode, **fields})


def decode_cdb(raw: bytes | bytearray | memoryview) -> Cdb:
    """Decode ``raw`` strictly: known opcode, exact length, no reserved bit set.

    Raises :class:`UnknownOpcodeError` for an opcode the target does not implement
    (that check comes first, as SPC requires), :class:`FieldError` for a bad length
    or a reserved bit (with the byte/bit for the sense field pointer).
    """
    if len(raw) == 0:
        raise FieldError("empty CDB (no operation code)", 0)
    layout = CDB_LAYOUTS.get(raw[0])
    if layout is None:
        raise UnknownOpcodeError(raw[0])
    if len(raw) != layout.length:
        raise FieldError(f"{layout.name} CDB must be {layout.length} bytes, got {len(raw)}", 0)
    return Cdb(raw[0], layout.unpack(raw))


# --- sense data (fixed format) -----------------------------------------------------

SENSE_LAYOUT = Layout(
    "fixed sense data",
    18,
    (
        Field("valid", 0, shift=7, bits=1),
        Field("response_code", 0, shift=0, bits=7),
        Field("obsolete", 1),
        Field("filemark", 2, shift=7, bits=1),
        Field("eom", 2, shift=6, bits=1),
        Field("ili", 2, shift=5, bits=1),
        Field("sdat_ovfl", 2, shift=4, bits=1),
        Field("sense_key", 2, shift=0, bits=4),
        Field("information", 3, size=4),
        Field("additional_length", 7),
        Field("command_specific", 8, size=4),
        Field("asc", 12),
        Field("ascq", 13),
        Field("fru", 14),
        Field("sksv", 15, shift=7, bits=1),
        Field("sense_key_specific", 15, shift=0, bits=7),
        Field("field_pointer", 16, size=2),
    ),
)
FIXED_SENSE_LENGTH = 18
SENSE_RESPONSE_CODES = (0x70, 0x71)


@dataclass(frozen=True)
class Sense:
    """Fixed-format sense data (response code 0x70 current / 0x71 deferred).

    For ILLEGAL REQUEST, ``sense_key_specific`` holds C/D (bit 6), BPV (bit 3) and the
    bit pointer (bits 2:0) and ``field_pointer`` the byte offset; see :func:`illegal_request`.
    """

    key: int
    asc: int = 0
    ascq: int = 0
    response_code: int = 0x70
    valid: int = 0
    information: int = 0
    filemark: int = 0
    eom: int = 0
    ili: int = 0
    sdat_ovfl: int = 0
    command_specific: int = 0
    fru: int = 0
    sksv: int = 0
    sense_key_specific: int = 0
    field_pointer: int = 0
    obsolete: int = 0

    @property
    def additional_sense(self) -> tuple[int, int]:
        return (self.asc, self.ascq)

    def encode(self, *, additional_length: int | None = None) -> bytes:
        """18 bytes of fixed sense; ``additional_length`` defaults to the correct 10."""
        values = {
            "valid": self.valid,
            "response_code": self.response_code,
            "obsolete": self.obsolete,
            "filemark": self.filemark,
            "eom": self.eom,
            "ili": self.ili,
            "sdat_ovfl": self.sdat_ovfl,
            "sense_key": self.key,
            "information": self.information,
            "additional_length": FIXED_SENSE_LENGTH - 8 if additional_length is None else additional_length,
            "command_specific": self.command_specific,
            "asc": self.asc,
            "ascq": self.ascq,
            "fru": self.fru,
            "sksv": self.sksv,
            "sense_key_specific": self.sense_key_specific,
            "field_pointer": self.field_pointer,
        }
        return SENSE_LAYOUT.pack(values)


def decode_sense(raw: bytes | bytearray | memoryview) -> Sense:
    """Decode fixed-format sense data strictly.

    ``raw`` may be longer than the sense data (sense buffers are fixed-size); it may
    not be shorter than 8 + ADDITIONAL SENSE LENGTH, and that length must cover the
    18 bytes of the fixed format.
    """
    if len(raw) < 8:
        raise CodecError(f"sense data must be at least 8 bytes, got {len(raw)}")
    code = raw[0] & 0x7F
    if code not in SENSE_RESPONSE_CODES:
        raise CodecError(f"sense response code 0x{code:02x} is not fixed format (0x70/0x71)")
    additional = raw[7]
    if additional < FIXED_SENSE_LENGTH - 8:
        raise CodecError(f"fixed sense additional length {additional} < 10: ASC/ASCQ missing")
    if len(raw) < 8 + additional:
        raise CodecError(
            f"sense data truncated: additional length {additional} needs {8 + additional} bytes, got {len(raw)}"
        )
    v = SENSE_LAYOUT.unpack(raw[:FIXED_SENSE_LENGTH])
    return Sense(
        key=v["sense_key"],
        asc=v["asc"],
        ascq=v["ascq"],
        response_code=v["response_code"],
        valid=v["valid"],
        information=v["information"],
        filemark=v["filemark"],
        eom=v["eom"],
        ili=v["ili"],
        sdat_ovfl=v["sdat_ovfl"],
        command_specific=v["command_specific"],
        fru=v["fru"],
        sksv=v["sksv"],
        sense_key_specific=v["sense_key_specific"],
        field_pointer=v["field_pointer"],
        obsolete=v["obsolete"],
    )


def illegal_request(
    what: AdditionalSense, *, byte: int | None = None, bit: int | None = None, in_cdb: bool = True
) -> Sense:
    """ILLEGAL REQUEST sense with the SPC sense-key-specific field pointer when ``byte`` is known."""
    if byte is None or not 0 <= byte <= 0xFFFF:  # the field pointer is 16 bits; beyond it, no pointer
        return Sense(SenseKey.ILLEGAL_REQUEST, what.asc, what.ascq)
    specific = (0x40 if in_cdb else 0) | ((0x08 | bit) if bit is not None else 0)
    return Sense(SenseKey.ILLEGAL_REQUEST, what.asc, what.ascq, sksv=1, sense_key_specific=specific, field_pointer=byte)


# --- standard INQUIRY data -----------------------------------------------------------

INQUIRY_LAYOUT = Layout(
    "standard INQUIRY data",
    8,
    (
        Field("peripheral_qualifier", 0, shift=5, bits=3),
        Field("device_type", 0, shift=0, bits=5),
        Field("rmb", 1, shift=7, bits=1),
        Field("lu_cong", 1, shift=6, bits=1),
        Field("version", 2),
        Field("normaca", 3, shift=5, bits=1),
        Field("hisup", 3, shift=4, bits=1),
        Field("response_data_format", 3, shift=0, bits=4),
        Field("additional_length", 4),
        Field("flags5", 5),
        Field("flags6", 6),
        Field("flags7", 7),
    ),
)
STANDARD_INQUIRY_LENGTH = 36
PERIPHERAL_DEVICE_TYPE_SCANNER = 0x06


def _ascii_field(name: str, value: str, size: int) -> bytes:
    raw = value.encode("ascii", "strict") if value.isascii() else b""
    if not value.isascii() or len(raw) > size or any(c < 0x20 or c > 0x7E for c in raw):
        raise CodecError(f"INQUIRY {name} {value!r} must be at most {size} printable ASCII characters")
    return raw.ljust(size, b" ")


def _ascii_decode(name: str, raw: bytes | bytearray | memoryview) -> str:
    data = bytes(raw)
    if any(c < 0x20 or c > 0x7E for c in data):
        raise CodecError(f"INQUIRY {name} {data!r} is not printable ASCII")
    return data.decode("ascii").rstrip(" ")


@dataclass(frozen=True)
class StandardInquiry:
    """The 36 mandatory bytes of standard INQUIRY data (SPC-4 §6.6.2)."""

    vendor: str = "FABQUAL"
    product: str = "IPoFC tunnel"
    revision: str = "0001"
    device_type: int = PERIPHERAL_DEVICE_TYPE_SCANNER
    peripheral_qualifier: int = 0
    rmb: int = 0
    lu_cong: int = 0
    version: int = 0x06  # SPC-4
    normaca: int = 0
    hisup: int = 1
    response_data_format: int = 2
    flags5: int = 0
    flags6: int = 0
    flags7: int = 0x02  # CMDQUE: several commands may be outstanding

    def encode(self, *, additional_length: int | None = None) -> bytes:
        """36 bytes; ADDITIONAL LENGTH defaults to the correct 31."""
        head = INQUIRY_LAYOUT.pack(
            {
                "peripheral_qualifier": self.peripheral_qualifier,
                "device_type": self.device_type,
                "rmb": self.rmb,
                "lu_cong": self.lu_cong,
                "version": self.version,
                "normaca": self.normaca,
                "hisup": self.hisup,
                "response_data_format": self.response_data_format,
                "additional_length": STANDARD_INQUIRY_LENGTH - 5 if additional_length is None else additional_length,
                "flags5": self.flags5,
                "flags6": self.flags6,
                "flags7": self.flags7,
            }
        )
        return (
            head
            + _ascii_field("vendor", self.vendor, 8)
            + _ascii_field("product", self.product, 16)
            + _ascii_field("revision", self.revision, 4)
        )


def decode_inquiry(raw: bytes | bytearray | memoryview) -> StandardInquiry:
    """Decode standard INQUIRY data: at least 36 bytes, consistent additional length, ASCII ids."""
    if len(raw) < STANDARD_INQUIRY_LENGTH:
        raise CodecError(f"standard INQUIRY data must be at least 36 bytes, got {len(raw)}")
    v = INQUIRY_LAYOUT.unpack(raw[:8])
    if v["additional_length"] < STANDARD_INQUIRY_LENGTH - 5:
        raise CodecError(f"INQUIRY additional length {v['additional_length']} < 31")
    if v["response_data_format"] != 2:
        raise CodecError(f"INQUIRY response data format {v['response_data_format']} is not 2")
    del v["additional_length"]
    return StandardInquiry(
        vendor=_ascii_decode("vendor", raw[8:16]),
        product=_ascii_decode("product", raw[16:32]),
        revision=_ascii_decode("revision", raw[32:36]),
        **v,
    )


# --- VPD pages -----------------------------------------------------------------------

VPD_SUPPORTED_PAGES = 0x00
VPD_UNIT_SERIAL_NUMBER = 0x80
VPD_DEVICE_IDENTIFICATION = 0x83


@dataclass(frozen=True)
class VpdPage:
    """A VPD page: 4-byte header (PQ/PDT, page code, BE16 page length) and its payload."""

    page_code: int
    payload: bytes
    device_type: int = PERIPHERAL_DEVICE_TYPE_SCANNER
    peripheral_qualifier: int = 0

    def encode(self, *, page_length: int | None = None) -> bytes:
        length = len(self.payload) if page_length is None else page_length
        if not 0 <= length <= 0xFFFF:
            raise CodecError(f"VPD page 0x{self.page_code:02x} length {length} exceeds 65535")
        return (
            bytes([(self.peripheral_qualifier << 5) | self.device_type, self.page_code])
            + length.to_bytes(2, "big")
            + self.payload
        )


def decode_vpd(raw: bytes | bytearray | memoryview) -> VpdPage:
    """Decode a VPD page; the page length must match the bytes present exactly."""
    if len(raw) < 4:
        raise CodecError(f"VPD page must be at least 4 bytes, got {len(raw)}")
    length = int.from_bytes(raw[2:4], "big")
    if len(raw) != 4 + length:
        raise CodecError(f"VPD page 0x{raw[1]:02x} says {length} payload bytes, has {len(raw) - 4}")
    return VpdPage(raw[1], bytes(raw[4:]), device_type=raw[0] & 0x1F, peripheral_qualifier=raw[0] >> 5)


def supported_pages_vpd(pages: list[int], device_type: int = PERIPHERAL_DEVICE_TYPE_SCANNER) -> VpdPage:
    """VPD page 0x00: the supported page codes, ascending."""
    if sorted(set(pages)) != pages:
        raise CodecError(f"supported VPD pages must be ascending and unique, got {pages}")
    return VpdPage(VPD_SUPPORTED_PAGES, bytes(pages), device_type)


def serial_number_vpd(serial: str, device_type: int = PERIPHERAL_DEVICE_TYPE_SCANNER) -> VpdPage:
    """VPD page 0x80: the unit serial number (printable ASCII)."""
    return VpdPage(VPD_UNIT_SERIAL_NUMBER, _ascii_field("serial", serial, len(serial)), device_type)


DESIGNATOR_LAYOUT = Layout(
    "designation descriptor header",
    4,
    (
        Field("protocol_identifier", 0, shift=4, bits=4),
        Field("code_set", 0, shift=0, bits=4),
        Field("piv", 1, shift=7, bits=1),
        Field("association", 1, shift=4, bits=2),
        Field("designator_type", 1, shift=0, bits=4),
        Field("designator_length", 3),
    ),
)
CODE_SET_BINARY = 1
CODE_SET_ASCII = 2
DESIGNATOR_T10_VENDOR_ID = 1
DESIGNATOR_NAA = 3


@dataclass(frozen=True)
class Designator:
    """One designation descriptor of VPD page 0x83."""

    designator_type: int
    value: bytes
    code_set: int = CODE_SET_BINARY
    association: int = 0  # the logical unit
    protocol_identifier: int = 0
    piv: int = 0

    def encode(self, *, designator_length: int | None = None) -> bytes:
        return (
            DESIGNATOR_LAYOUT.pack(
                {
                    "protocol_identifier": self.protocol_identifier,
                    "code_set": self.code_set,
                    "piv": self.piv,
                    "association": self.association,
                    "designator_type": self.designator_type,
                    "designator_length": len(self.value) if designator_length is None else designator_length,
                }
            )
            + self.value
        )


def device_identification_vpd(
    designators: list[Designator], device_type: int = PERIPHERAL_DEVICE_TYPE_SCANNER
) -> VpdPage:
    """VPD page 0x83 from its designation descriptors."""
    return VpdPage(VPD_DEVICE_IDENTIFICATION, b"".join(d.encode() for d in designators), device_type)


def decode_designators(payload: bytes | bytearray | memoryview) -> list[Designator]:
    """The designation descriptors of a page 0x83 payload; each length must fit exactly."""
    out: list[Designator] = []
    pos = 0
    while pos < len(payload):
        if len(payload) - pos < 4:
            raise CodecError(f"device identification: {len(payload) - pos} stray bytes at offset {pos}")
        v = DESIGNATOR_LAYOUT.unpack(payload[pos : pos + 4])
        end = pos + 4 + v["designator_length"]
        if end > len(payload):
            raise CodecError(
                f"device identification: designator at offset {pos} claims {v['designator_length']} bytes,"
                f" only {len(payload) - pos - 4} left"
            )
        out.append(
            Designator(
                v["designator_type"],
                bytes(payload[pos + 4 : end]),
                code_set=v["code_set"],
                association=v["association"],
                protocol_identifier=v["protocol_identifier"],
                piv=v["piv"],
            )
        )
        pos = end
    return out


# --- MODE SENSE ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModePage:
    """A mode page (page_0 format, or sub_page format when ``subpage_code`` is non-zero)."""

    page_code: int
    payload: bytes
    subpage_code: int = 0
    ps: int = 0

    def encode(self, *, page_length: int | None = None) -> bytes:
        spf = self.subpage_code != 0
        head = (self.ps << 7) | (0x40 if spf else 0) | self.page_code
        length = len(self.payload) if page_length is None else page_length
        if spf:
            return bytes([head, self.subpage_code]) + length.to_bytes(2, "big") + self.payload
        if length > 0xFF:
            raise CodecError(f"mode page 0x{self.page_code:02x} length {length} exceeds 255")
        return bytes([head, length]) + self.payload


def decode_mode_pages(raw: bytes | bytearray | memoryview) -> list[ModePage]:
    """Split a mode parameter list's page area into pages; every length must fit exactly."""
    pages: list[ModePage] = []
    pos = 0
    while pos < len(raw):
        head = raw[pos]
        spf = bool(head & 0x40)
        hdr = 4 if spf else 2
        if len(raw) - pos < hdr:
            raise CodecError(f"mode page header truncated at offset {pos}")
        length = int.from_bytes(raw[pos + 2 : pos + 4], "big") if spf else raw[pos + 1]
        end = pos + hdr + length
        if end > len(raw):
            raise CodecError(
                f"mode page 0x{head & 0x3F:02x} at offset {pos} claims {length} bytes, has {len(raw) - pos - hdr}"
            )
        pages.append(ModePage(head & 0x3F, bytes(raw[pos + hdr : end]), raw[pos + 1] if spf else 0, head >> 7))
        pos = end
    return pages


@dataclass(frozen=True)
class ModeParameters:
    """A mode parameter list: header fields, block descriptors and pages."""

    pages: tuple[ModePage, ...] = ()
    medium_type: int = 0
    device_specific: int = 0
    block_descriptors: bytes = b""

    def encode6(self, *, mode_data_length: int | None = None) -> bytes:
        """MODE SENSE(6) form; MODE DATA LENGTH defaults to the correct value (excludes itself)."""
        body = self.block_descriptors + b"".join(p.encode() for p in self.pages)
        length = 3 + len(body) if mode_data_length is None else mode_data_length
        if not 0 <= length <= 0xFF or len(self.block_descriptors) > 0xFF:
            raise CodecError(f"mode parameter list of {3 + len(body)} bytes does not fit MODE SENSE(6)")
        return bytes([length, self.medium_type, self.device_specific, len(self.block_descriptors)]) + body

    def encode10(self, *, mode_data_length: int | None = None) -> bytes:
        """MODE SENSE(10) form (LONGLBA 0)."""
        body = self.block_descriptors + b"".join(p.encode() for p in self.pages)
        length = 6 + len(body) if mode_data_length is None else mode_data_length
        return (
            length.to_bytes(2, "big")
            + bytes([self.medium_type, self.device_specific, 0, 0])
            + len(self.block_descriptors).to_bytes(2, "big")
            + body
        )


def _decode_mode(raw: bytes | bytearray | memoryview, hdr: int, length: int, bd_len: int) -> ModeParameters:
    if len(raw) != length:
        raise CodecError(f"mode parameter list says {length} bytes, has {len(raw)}")
    if hdr + bd_len > len(raw):
        raise CodecError(f"block descriptor length {bd_len} runs past the {len(raw)}-byte parameter list")
    return ModeParameters(
        pages=tuple(decode_mode_pages(raw[hdr + bd_len :])),
        medium_type=raw[1] if hdr == 4 else raw[2],
        device_specific=raw[2] if hdr == 4 else raw[3],
        block_descriptors=bytes(raw[hdr : hdr + bd_len]),
    )


def decode_mode6(raw: bytes | bytearray | memoryview) -> ModeParameters:
    """Decode a complete MODE SENSE(6) parameter list."""
    if len(raw) < 4:
        raise CodecError(f"MODE SENSE(6) data must be at least 4 bytes, got {len(raw)}")
    return _decode_mode(raw, 4, raw[0] + 1, raw[3])


def decode_mode10(raw: bytes | bytearray | memoryview) -> ModeParameters:
    """Decode a complete MODE SENSE(10) parameter list."""
    if len(raw) < 8:
        raise CodecError(f"MODE SENSE(10) data must be at least 8 bytes, got {len(raw)}")
    if raw[4] & 0x01:
        raise CodecError("MODE SENSE(10) LONGLBA set: long block descriptors are not supported")
    return _decode_mode(raw, 8, int.from_bytes(raw[0:2], "big") + 2, int.from_bytes(raw[6:8], "big"))


# --- REPORT LUNS ----------------------------------------------------------------------


@dataclass(frozen=True)
class LunList:
    """REPORT LUNS parameter data: 8-byte LUN entries (peripheral addressing for small LUNs)."""

    luns: tuple[int, ...] = field(default=(0,))

    def encode(self, *, list_length: int | None = None) -> bytes:
        length = 8 * len(self.luns) if list_length is None else list_length
        entries = b"".join(_lun_bytes(lun) for lun in self.luns)
        return length.to_bytes(4, "big") + bytes(4) + entries


def _lun_bytes(lun: int) -> bytes:
    if not 0 <= lun < 256:
        raise CodecError(f"LUN {lun} needs flat addressing; only 0..255 (peripheral) is supported")
    return bytes([0, lun]) + bytes(6)


def decode_lun_list(raw: bytes | bytearray | memoryview) -> LunList:
    """Decode complete REPORT LUNS data: LUN LIST LENGTH must be a multiple of 8 matching the bytes."""
    if len(raw) < 8:
        raise CodecError(f"REPORT LUNS data must be at least 8 bytes, got {len(raw)}")
    length = int.from_bytes(raw[0:4], "big")
    if length % 8 or len(raw) != 8 + length:
        raise CodecError(f"REPORT LUNS list length {length} does not match {len(raw) - 8} entry bytes")
    if any(raw[4:8]):
        raise CodecError("REPORT LUNS reserved bytes 4..7 are not zero")
    luns = []
    for pos in range(8, len(raw), 8):
        entry = raw[pos : pos + 8]
        if entry[0] != 0 or any(entry[2:]):
            raise CodecError(f"REPORT LUNS entry {bytes(entry).hex()} is not a peripheral-addressed LUN")
        luns.append(entry[1])
    return LunList(tuple(luns))
