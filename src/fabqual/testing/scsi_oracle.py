"""An oracle for the live IPoFC fuzz that owes nothing to the target's dispatcher or codec.

Its tables are written from SPC-4/SBC-3 and SAM-5 directly (not imported from
``fabqual.ipofc.scsi``), so a bug in the codec cannot make the oracle agree with it:

* **status per opcode** — the tunnel LU answers GOOD or CHECK CONDITION (no
  reservations, no ACA, no CONDITION MET); LIO's core, which answers REPORT LUNS
  itself, may answer any SAM status;
* **sense validity** — fixed format (the LU's Control mode page says D_SENSE 0),
  additional length >= 10, a sense key that is not NO SENSE with CHECK CONDITION, an
  ILLEGAL REQUEST ASC/ASCQ that SPC lists for a refused command or parameter list,
  and a sense-key-specific field pointer that points inside the CDB (C/D 1) or the
  data-out (C/D 0), with C/D matching the ASC;
* **allocation-length truncation** — data-in is exactly the smaller of the
  allocation length, the initiator's buffer and the length the data describes in its
  own header (SPC 4.2.5.6);
* **WRITE frames** — a data-out frame the fuzzer built valid gets GOOD; one it broke
  (truncated, lying lengths, wrong count, bad CRC, garbage) gets ILLEGAL REQUEST with
  PARAMETER LIST LENGTH ERROR or INVALID FIELD IN PARAMETER LIST.

``sg_decode_sense`` (sg3_utils, run on the initiator) is the independent decoder: its
reading of every distinct sense buffer must agree with this one (:func:`sg3_agrees`).
Pure; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GOOD, CHECK_CONDITION = 0x00, 0x02
SAM_STATUSES = frozenset({0x00, 0x02, 0x04, 0x08, 0x18, 0x28, 0x30, 0x40})
LIO_CORE_OPCODES = frozenset({0xA0})  # REPORT LUNS: answered by LIO's core, not the handler
ILLEGAL_REQUEST, UNIT_ATTENTION = 0x5, 0x6
# SPC-4 sense keys by value, as sg3_utils spells them (sg_lib.c sg_lib_sense_key_desc).
SENSE_KEY_NAMES = {
    0x0: "No Sense",
    0x1: "Recovered Error",
    0x2: "Not Ready",
    0x3: "Medium Error",
    0x4: "Hardware Error",
    0x5: "Illegal Request",
    0x6: "Unit Attention",
    0x7: "Data Protect",
    0x8: "Blank Check",
    0x9: "Vendor specific",
    0xA: "Copy Aborted",
    0xB: "Aborted Command",
    0xD: "Volume Overflow",
    0xE: "Miscompare",
    0xF: "Completed",
}
# ILLEGAL REQUEST additional sense a LU may give for a refused CDB (C/D 1) or data-out (C/D 0).
CDB_ASCS = {
    (0x20, 0x00): "Invalid command operation code",
    (0x24, 0x00): "Invalid field in cdb",
    (0x21, 0x00): "Logical block address out of range",
    (0x25, 0x00): "Logical unit not supported",
    (0x39, 0x00): "Saving parameters not supported",
}
DATA_OUT_ASCS = {
    (0x1A, 0x00): "Parameter list length error",
    (0x26, 0x00): "Invalid field in parameter list",
}


@dataclass(frozen=True)
class Answer:
    """What came back for one command: SAM status, sense and data-in bytes (host/driver status aside)."""

    status: int
    sense: bytes = b""
    data: bytes = b""


def _be(raw: bytes, start: int, size: int) -> int:
    return int.from_bytes(raw[start : start + size], "big")


def sense_problems(sense: bytes, *, cdb_length: int, data_out_length: int) -> list[str]:
    """What is wrong with ``sense`` as the sense data of a CHECK CONDITION (empty when valid)."""
    if len(sense) < 8:
        return [f"sense of {len(sense)} bytes: CHECK CONDITION needs at least 8"]
    code = sense[0] & 0x7F
    if code not in (0x70, 0x71):
        return [f"response code 0x{code:02x} is not fixed format (the Control page says D_SENSE 0)"]
    additional = sense[7]
    if additional < 10 or len(sense) < 8 + min(additional, 10):
        return [f"additional length {additional} with {len(sense)} bytes: ASC/ASCQ missing"]
    problems: list[str] = []
    key, asc, ascq = sense[2] & 0x0F, sense[12], sense[13]
    if key not in SENSE_KEY_NAMES or key == 0:
        problems.append(f"sense key 0x{key:x} with CHECK CONDITION")
    if key == ILLEGAL_REQUEST:
        in_cdb = (asc, ascq) in CDB_ASCS
        if not in_cdb and (asc, ascq) not in DATA_OUT_ASCS:
            problems.append(f"ILLEGAL REQUEST with ASC/ASCQ {asc:02x}/{ascq:02x}, not a refusal SPC lists")
        if len(sense) >= 18 and sense[15] & 0x80:  # SKSV: a field pointer
            c_d, bpv, bit, pointer = bool(sense[15] & 0x40), bool(sense[15] & 0x08), sense[15] & 0x07, _be(sense, 16, 2)
            limit = cdb_length if c_d else data_out_length
            if c_d != in_cdb:
                problems.append(
                    f"C/D {int(c_d)} with ASC {asc:02x}: the pointer must name the {'CDB' if in_cdb else 'data-out'}"
                )
            if pointer >= max(limit, 1):
                where = "CDB" if c_d else "data-out"
                problems.append(f"field pointer byte {pointer} outside the {limit}-byte {where}")
            if not bpv and bit:
                problems.append(f"bit pointer {bit} without BPV")
    elif key not in (UNIT_ATTENTION, 0xB):  # a reset's UNIT ATTENTION or a transport ABORTED COMMAND only
        problems.append(f"sense key {SENSE_KEY_NAMES.get(key, hex(key))} for a command this LU only refuses")
    return problems


def described_length(cdb: bytes, data: bytes) -> int | None:
    """The length the data-in describes in its own header, for commands with an allocation length."""
    op = cdb[0]
    if op == 0x12:  # INQUIRY: standard (byte 4 + 5) or VPD page (bytes 2-3 + 4)
        if cdb[1] & 0x01:
            return 4 + _be(data, 2, 2) if len(data) >= 4 else None
        return data[4] + 5 if len(data) >= 5 else None
    if op == 0x1A:
        return data[0] + 1 if data else None
    if op == 0x5A:
        return _be(data, 0, 2) + 2 if len(data) >= 2 else None
    if op == 0x03:
        return 8 + data[7] if len(data) >= 8 else None
    if op == 0xA0:
        return 8 + _be(data, 0, 4) if len(data) >= 4 else None
    return None


def header_length(cdb: bytes) -> int:
    """Bytes of data-in :func:`described_length` needs to read the length the data describes."""
    if cdb[0] == 0x12:
        return 4 if len(cdb) > 1 and cdb[1] & 0x01 else 5
    return {0x1A: 1, 0x5A: 2, 0x03: 8, 0xA0: 4}.get(cdb[0], 0)


def allocation_length(cdb: bytes) -> int | None:
    """The CDB's allocation length field (SPC), for the commands that have one."""
    fields = {0x12: (3, 2), 0x1A: (4, 1), 0x5A: (7, 2), 0x03: (4, 1), 0xA0: (6, 4)}
    where = fields.get(cdb[0]) if cdb else None
    if where is None or len(cdb) < where[0] + where[1]:
        return None
    return _be(cdb, *where)


def cdb_problems(cdb: bytes, answer: Answer, *, buffer: int) -> list[str]:
    """What the answer to a fuzzed CDB breaks of SPC's rules (``buffer``: the initiator's data-in buffer)."""
    if not cdb:
        return []
    if cdb[0] in LIO_CORE_OPCODES:
        return [] if answer.status in SAM_STATUSES else [f"status 0x{answer.status:02x} is no SAM status"]
    if answer.status not in (GOOD, CHECK_CONDITION):
        return [f"status 0x{answer.status:02x}: this LU answers GOOD or CHECK CONDITION"]
    if answer.status == CHECK_CONDITION:
        return sense_problems(answer.sense, cdb_length=len(cdb), data_out_length=0)
    problems = []
    if answer.sense:
        problems.append("sense data with GOOD status")
    alloc = allocation_length(cdb)
    if alloc == 0:
        # SPC: no data. The handler answers so (TCMU read_len 0, seen in its log), yet Debian 6.1's
        # TCMU/LIO path reports the whole buffer transferred (sg_raw -r 4096 "03 00 00 00 00 00"
        # through tcm_loop: "Received 4096 bytes"); allocation length 1.. is exact. Not judged here.
        return problems
    described = described_length(cdb, answer.data)
    if alloc is not None and described is not None:
        want = min(alloc, buffer, described)
        if len(answer.data) != want:
            problems.append(
                f"{len(answer.data)} bytes of data-in; allocation length {alloc}, buffer {buffer} and the"
                f" {described} bytes the data describes say {want}"
            )
    elif alloc is not None and len(answer.data) > alloc:
        problems.append(f"{len(answer.data)} bytes of data-in beyond the allocation length {alloc}")
    elif alloc is not None and len(answer.data) < min(alloc, buffer, header_length(cdb)):
        problems.append(f"{len(answer.data)} bytes of data-in: not even the header, allocation length {alloc}")
    if cdb[0] == 0x12 and not cdb[1] & 0x01 and answer.data and answer.data[0] & 0x1F != 0x06:
        problems.append(f"peripheral device type {answer.data[0] & 0x1F}, the tunnel LU is type 6")
    return problems


def frame_problems(kind: str, answer: Answer, *, cdb_length: int, data_out_length: int) -> list[str]:
    """A WRITE whose data-out is a tunnel frame of ``kind`` (``strategies.FRAME_KINDS``): GOOD only if valid."""
    if kind == "valid":
        return [] if answer.status == GOOD else [f"valid frame answered 0x{answer.status:02x} {answer.sense.hex()}"]
    if answer.status != CHECK_CONDITION:
        return [f"{kind} frame answered status 0x{answer.status:02x}, not CHECK CONDITION"]
    problems = sense_problems(answer.sense, cdb_length=cdb_length, data_out_length=data_out_length)
    if len(answer.sense) >= 14 and (answer.sense[2] & 0x0F, answer.sense[12], answer.sense[13]) not in {
        (ILLEGAL_REQUEST, *pair) for pair in DATA_OUT_ASCS
    }:
        problems.append(f"{kind} frame refused with sense {answer.sense[:18].hex()}, not a parameter list error")
    return problems


_SG3_KEY = re.compile(r"Sense key: (.+)")
_SG3_ASC = re.compile(r"Additional sense: (.+)")


def sg3_agrees(sense: bytes, text: str) -> list[str]:
    """Where ``sg_decode_sense``'s reading of ``sense`` differs from this module's (empty when it agrees)."""
    problems = []
    if "Fixed format" not in text:
        problems.append("sg_decode_sense does not read it as fixed format")
    key = _SG3_KEY.search(text)
    want = SENSE_KEY_NAMES.get(sense[2] & 0x0F) if len(sense) > 2 else None
    if not key or key[1].strip() != want:
        problems.append(f"sg_decode_sense reads sense key {key[1].strip() if key else None!r}, expected {want!r}")
    asc = _SG3_ASC.search(text)
    pair = (sense[12], sense[13]) if len(sense) > 13 else None
    name = CDB_ASCS.get(pair) or DATA_OUT_ASCS.get(pair) if pair else None
    if name and (not asc or asc[1].strip().lower() != name.lower()):
        problems.append(f"sg_decode_sense reads additional sense {asc[1] if asc else None!r}, expected {name!r}")
    sksv = len(sense) >= 18 and bool(sense[15] & 0x80)
    if sksv != ("Sense Key Specific" in text):
        problems.append(f"sg_decode_sense {'misses' if sksv else 'invents'} the sense-key-specific field")
    return problems
