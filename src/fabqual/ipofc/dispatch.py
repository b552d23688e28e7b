"""The IPoFC logical unit's command dispatcher: CDB bytes in, status + data + sense out.

Pure: no I/O, no clock. The TCMU runtime (``tcmu.py``) feeds it every command the
kernel passes up; READ/WRITE carry the tunnel and go to a :class:`DataPath` (the
tunnel session). :meth:`Dispatcher.handle` never raises: every unsupported opcode
gets ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE, every malformed CDB
ILLEGAL REQUEST / INVALID FIELD IN CDB with the field pointer, and an internal bug
HARDWARE ERROR / INTERNAL TARGET FAILURE instead of a dead target (the original's
failure mode, see research note §1.7).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

from fabqual.errors import CodecError
from fabqual.ipofc import scsi
from fabqual.ipofc.fields import FieldError
from fabqual.ipofc.scsi import Opcode, SenseKey, Status


@dataclass(frozen=True)
class Response:
    """What the logical unit answers: SAM status, data-in bytes and (for CHECK CONDITION) sense."""

    status: Status
    data_in: bytes = b""
    sense: bytes = b""

    @classmethod
    def good(cls, data: bytes = b"", allocation_length: int | None = None) -> Response:
        """GOOD with ``data`` truncated to the allocation length (SPC: shorter is not an error)."""
        return cls(Status.GOOD, data if allocation_length is None else data[:allocation_length])

    @classmethod
    def check(cls, sense: scsi.Sense) -> Response:
        """CHECK CONDITION carrying ``sense`` in fixed format."""
        return cls(Status.CHECK_CONDITION, b"", sense.encode())


class DataPath(Protocol):
    """Where READ/WRITE payloads go: the tunnel session of this end."""

    def write(self, payload: bytes) -> None:
        """Take one WRITE's data-out; raise :class:`CodecError` if it is not a valid tunnel frame."""

    def read(self, cmd_id: int, capacity: int) -> bytes | None:
        """Data-in for one READ of at most ``capacity`` bytes, or None to hold the READ."""


@dataclass(frozen=True)
class LunConfig:
    """Identity and limits of the tunnel logical unit."""

    inquiry: scsi.StandardInquiry = field(default_factory=scsi.StandardInquiry)
    serial: str = "fabqual-ipofc-0"
    block_size: int = 512
    capacity_blocks: int = 1 << 31  # 1 TiB at 512: only bounds the LBA, nothing is stored
    max_transfer_blocks: int = 8192  # 4 MiB at 512, matches hw_max_sectors in the TCMU setup
    luns: tuple[int, ...] = (0,)


_DISCONNECT_RECONNECT = scsi.ModePage(0x02, bytes(14))
# Control page: QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering), D_SENSE 0 (fixed sense),
# BUSY TIMEOUT PERIOD unlimited.
_CONTROL = scsi.ModePage(0x0A, bytes([0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00]))
MODE_PAGES = {0x02: _DISCONNECT_RECONNECT, 0x0A: _CONTROL}
ALL_PAGES = 0x3F
VPD_PAGES = [scsi.VPD_SUPPORTED_PAGES, scsi.VPD_UNIT_SERIAL_NUMBER, scsi.VPD_DEVICE_IDENTIFICATION]


class _Reject(Exception):
    """Internal: stop handling a command with this sense."""

    def __init__(self, sense: scsi.Sense) -> None:
        self.sense = sense


def _invalid_field(byte: int, bit: int | None = None) -> _Reject:
    return _Reject(scsi.illegal_request(scsi.INVALID_FIELD_IN_CDB, byte=byte, bit=bit))


class Dispatcher:
    """Answers SCSI commands for the IPoFC logical unit."""

    def __init__(self, config: LunConfig | None = None, data_path: DataPath | None = None) -> None:
        self.config = config or LunConfig()
        self.data_path = data_path
        dt = self.config.inquiry.device_type
        self._vpd = {
            scsi.VPD_SUPPORTED_PAGES: scsi.supported_pages_vpd(VPD_PAGES, dt),
            scsi.VPD_UNIT_SERIAL_NUMBER: scsi.serial_number_vpd(self.config.serial, dt),
            scsi.VPD_DEVICE_IDENTIFICATION: scsi.device_identification_vpd(self._designators(), dt),
        }
        self._inquiry = self.config.inquiry.encode()

    def _designators(self) -> list[scsi.Designator]:
        vendor = self.config.inquiry.vendor.ljust(8).encode("ascii")
        t10 = scsi.Designator(
            scsi.DESIGNATOR_T10_VENDOR_ID, vendor + self.config.serial.encode("ascii"), code_set=scsi.CODE_SET_ASCII
        )
        # NAA 3 (locally assigned): 60 bits derived from the serial, stable across restarts.
        digest = int.from_bytes(hashlib.sha256(self.config.serial.encode()).digest()[:8], "big")
        naa = scsi.Designator(scsi.DESIGNATOR_NAA, ((0x3 << 60) | (digest >> 4)).to_bytes(8, "big"))
        return [t10, naa]

    def handle(self, cdb: bytes, data_out: bytes = b"", cmd_id: int = 0) -> Response | None:
        """Answer one command. None only for a valid READ the data path chose to hold."""
        try:
            return self._handle(bytes(cdb), bytes(data_out), cmd_id)
        except _Reject as rej:
            return Response.check(rej.sense)
        except Exception:  # a bug here must not kill the LU (the original died on these)
            return Response.check(scsi.Sense(SenseKey.HARDWARE_ERROR, *_asc(scsi.INTERNAL_TARGET_FAILURE)))

    def _handle(self, raw: bytes, data_out: bytes, cmd_id: int) -> Response | None:
        try:
            cdb = scsi.decode_cdb(raw)
        except scsi.UnknownOpcodeError:
            raise _Reject(scsi.illegal_request(scsi.INVALID_COMMAND_OPERATION_CODE, byte=0, bit=7)) from None
        except FieldError as err:
            raise _invalid_field(err.byte, err.bit) from None
        last = len(raw) - 1
        if cdb["naca"]:
            raise _invalid_field(last, 2)  # we do not support ACA
        if cdb["link"]:
            raise _invalid_field(last, 0)
        op = cdb.opcode
        if op == Opcode.TEST_UNIT_READY:
            return Response.good()
        if op == Opcode.INQUIRY:
            return self._inquiry_cmd(cdb)
        if op == Opcode.REQUEST_SENSE:
            if cdb["desc"]:
                raise _invalid_field(1, 0)  # descriptor-format sense is not supported
            no_sense = scsi.Sense(SenseKey.NO_SENSE).encode()
            return Response.good(no_sense, cdb["allocation_length"])
        if op in (Opcode.MODE_SENSE_6, Opcode.MODE_SENSE_10):
            return self._mode_sense(cdb)
        if op == Opcode.REPORT_LUNS:
            if cdb["select_report"] > 2:
                raise _invalid_field(2)
            if cdb["allocation_length"] < 16:
                raise _invalid_field(6)  # SPC-4: allocation length < 16 is invalid
            return Response.good(scsi.LunList(self.config.luns).encode(), cdb["allocation_length"])
        return self._read_write(cdb, data_out, cmd_id)

    def _inquiry_cmd(self, cdb: scsi.Cdb) -> Response:
        if cdb["cmddt"]:
            raise _invalid_field(1, 1)
        alloc = cdb["allocation_length"]
        if not cdb["evpd"]:
            if cdb["page_code"]:
                raise _invalid_field(2)
            return Response.good(self._inquiry, alloc)
        page = self._vpd.get(cdb["page_code"])
        if page is None:
            raise _invalid_field(2)
        return Response.good(page.encode(), alloc)

    def _mode_sense(self, cdb: scsi.Cdb) -> Response:
        if cdb["pc"] == 3:
            raise _Reject(scsi.illegal_request(scsi.SAVING_PARAMETERS_NOT_SUPPORTED, byte=2, bit=7))
        code, sub = cdb["page_code"], cdb["subpage_code"]
        if code == ALL_PAGES:
            if sub not in (0x00, 0xFF):
                raise _invalid_field(3)
            pages = [MODE_PAGES[k] for k in sorted(MODE_PAGES)]
        elif code in MODE_PAGES:
            if sub != 0:
                raise _invalid_field(3)
            pages = [MODE_PAGES[code]]
        else:
            raise _invalid_field(2, 5)
        if cdb["pc"] == 1:  # changeable values: nothing is changeable
            pages = [scsi.ModePage(p.page_code, bytes(len(p.payload)), p.subpage_code) for p in pages]
        params = scsi.ModeParameters(tuple(pages))
        data = params.encode6() if cdb.opcode == Opcode.MODE_SENSE_6 else params.encode10()
        return Response.good(data, cdb["allocation_length"])

    def _read_write(self, cdb: scsi.Cdb, data_out: bytes, cmd_id: int) -> Response | None:
        protect = "rdprotect" if cdb.opcode in scsi.READ_OPCODES else "wrprotect"
        if cdb[protect]:
            raise _invalid_field(1, 7)  # no protection information on this LU
        lba, blocks = cdb["lba"], cdb["transfer_length"]
        tl_offset = cdb.layout.by_name["transfer_length"].offset
        if blocks > self.config.max_transfer_blocks:
            raise _invalid_field(tl_offset)
        if lba >= self.config.capacity_blocks or lba + blocks > self.config.capacity_blocks:
            raise _Reject(scsi.illegal_request(scsi.LBA_OUT_OF_RANGE))
        if blocks == 0:
            return Response.good()
        if self.data_path is None:
            raise _Reject(scsi.illegal_request(scsi.INVALID_COMMAND_OPERATION_CODE, byte=0, bit=7))
        size = blocks * self.config.block_size
        if cdb.opcode in scsi.READ_OPCODES:
            data = self.data_path.read(cmd_id, size)
            return None if data is None else Response.good(data, size)
        try:
            self.data_path.write(data_out[:size])
        except CodecError as err:
            what = (
                scsi.PARAMETER_LIST_LENGTH_ERROR
                if getattr(err, "truncated", False)
                else scsi.INVALID_FIELD_IN_PARAMETER_LIST
            )
            byte = err.byte if isinstance(err, FieldError) else None
            raise _Reject(scsi.illegal_request(what, byte=byte, in_cdb=False)) from None
        return Response.good()


def _asc(what: scsi.AdditionalSense) -> tuple[int, int]:
    return (what.asc, what.ascq)
