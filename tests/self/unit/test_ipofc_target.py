"""The IPoFC logical unit's command dispatcher, fed CDBs directly (no kernel needed).

READ/WRITE go to the real :class:`TargetSession` on a hand-advanced clock. Several
cases are the original's crash list (research note §1.7): short allocation
lengths, MODE SENSE page 3, an unchecked frame length prefix, the wrong ASC for
unsupported opcodes.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fabqual.ipofc import framing, scsi
from fabqual.ipofc.dispatch import Dispatcher, LunConfig, Response
from fabqual.ipofc.scsi import Opcode, SenseKey, Status
from fabqual.ipofc.session import TargetSession
from fabqual.testing.strategies import cdbs, packets, valid_cdbs


class FakeClock:
    """A clock the test advances by hand, so hold deadlines are deterministic."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session(clock: FakeClock) -> TargetSession:
    return TargetSession(clock, hold_time=1.0)


@pytest.fixture
def lu(session: TargetSession) -> Dispatcher:
    return Dispatcher(LunConfig(), session)


def answer(lu: Dispatcher, cdb: bytes, data_out: bytes = b"", cmd_id: int = 0) -> Response:
    resp = lu.handle(cdb, data_out, cmd_id)
    assert resp is not None, "command was held"
    return resp


def sense_of(resp: Response) -> scsi.Sense:
    assert resp.status == Status.CHECK_CONDITION
    assert resp.data_in == b""
    return scsi.decode_sense(resp.sense)


def assert_illegal(resp: Response, what: scsi.AdditionalSense, byte: int | None = None, bit: int | None = None) -> None:
    sense = sense_of(resp)
    assert (sense.key, sense.additional_sense) == (SenseKey.ILLEGAL_REQUEST, (what.asc, what.ascq)), what.text
    if byte is not None:
        assert sense.sksv == 1 and sense.field_pointer == byte
        assert sense.sense_key_specific & 0x40, "C/D must say the error is in the CDB"
    if bit is not None:
        assert sense.sense_key_specific & 0x0F == 0x08 | bit


def cdb(op: int, **fields: int) -> bytes:
    return scsi.encode_cdb(op, **fields)


# --- control path ---------------------------------------------------------------------


def test_inquiry_is_scanner_with_fabqual_strings(lu: Dispatcher) -> None:
    """Standard INQUIRY answers peripheral type 6 with vendor FABQUAL and product 'IPoFC tunnel'."""
    resp = answer(lu, cdb(Opcode.INQUIRY, allocation_length=96))
    inq = scsi.decode_inquiry(resp.data_in)
    assert (resp.status, inq.device_type, inq.vendor, inq.product) == (Status.GOOD, 6, "FABQUAL", "IPoFC tunnel")


@pytest.mark.parametrize("alloc", [0, 1, 4, 5, 12, 35, 36, 37, 255, 65535])
def test_inquiry_respects_allocation_length(lu: Dispatcher, alloc: int) -> None:
    """Any allocation length (the original panicked below 5) gives GOOD and exactly min(alloc, 36) bytes."""
    resp = answer(lu, cdb(Opcode.INQUIRY, allocation_length=alloc))
    assert resp.status == Status.GOOD
    assert resp.data_in == scsi.StandardInquiry().encode()[:alloc]


def test_vpd_pages(lu: Dispatcher) -> None:
    """VPD 0x00 lists 00/80/83; 0x80 carries the serial; 0x83 a T10 vendor id starting 'FABQUAL ' and an NAA id."""

    def vpd(page: int) -> scsi.VpdPage:
        resp = answer(lu, cdb(Opcode.INQUIRY, evpd=1, page_code=page, allocation_length=255))
        return scsi.decode_vpd(resp.data_in)

    assert vpd(0x00).payload == bytes([0x00, 0x80, 0x83])
    assert vpd(0x80).payload == b"fabqual-ipofc-0"
    ids = scsi.decode_designators(vpd(0x83).payload)
    assert ids[0].designator_type == scsi.DESIGNATOR_T10_VENDOR_ID and ids[0].value.startswith(b"FABQUAL ")
    assert ids[1].designator_type == scsi.DESIGNATOR_NAA and ids[1].value[0] >> 4 == 3
    assert {vpd(p).device_type for p in (0x00, 0x80, 0x83)} == {6}


@pytest.mark.parametrize(
    ("fields", "byte", "bit"),
    [
        ({"evpd": 1, "page_code": 0xB0}, 2, None),  # unsupported VPD page
        ({"page_code": 0x80}, 2, None),  # page code without EVPD (the original's dead branch)
        ({"cmddt": 1}, 1, 1),  # obsolete CMDDT
    ],
    ids=["vpd-b0", "page-without-evpd", "cmddt"],
)
def test_bad_inquiry_fields(lu: Dispatcher, fields: dict[str, int], byte: int, bit: int | None) -> None:
    """Invalid INQUIRY fields give INVALID FIELD IN CDB pointing at the offending byte (and bit)."""
    resp = answer(lu, cdb(Opcode.INQUIRY, allocation_length=255, **fields))
    assert_illegal(resp, scsi.INVALID_FIELD_IN_CDB, byte, bit)


def test_test_unit_ready_and_request_sense(lu: Dispatcher) -> None:
    """TEST UNIT READY is GOOD without data; REQUEST SENSE returns NO SENSE, truncated to the allocation length."""
    assert answer(lu, cdb(Opcode.TEST_UNIT_READY)) == Response(Status.GOOD)
    full = answer(lu, cdb(Opcode.REQUEST_SENSE, allocation_length=252))
    assert scsi.decode_sense(full.data_in) == scsi.Sense(SenseKey.NO_SENSE)
    assert answer(lu, cdb(Opcode.REQUEST_SENSE, allocation_length=3)).data_in == full.data_in[:3]
    assert_illegal(
        answer(lu, cdb(Opcode.REQUEST_SENSE, desc=1, allocation_length=252)), scsi.INVALID_FIELD_IN_CDB, 1, 0
    )


@pytest.mark.parametrize("op", [Opcode.MODE_SENSE_6, Opcode.MODE_SENSE_10])
def test_mode_sense_all_pages(lu: Dispatcher, op: int) -> None:
    """MODE SENSE page 0x3F returns a valid parameter list with the disconnect-reconnect and control pages."""
    resp = answer(lu, cdb(op, page_code=0x3F, allocation_length=255))
    decode = scsi.decode_mode6 if op == Opcode.MODE_SENSE_6 else scsi.decode_mode10
    params = decode(resp.data_in)
    assert [p.page_code for p in params.pages] == [0x02, 0x0A]
    assert params.block_descriptors == b""


@pytest.mark.parametrize("alloc", [0, 1, 3, 11, 12])
def test_mode_sense_short_allocation(lu: Dispatcher, alloc: int) -> None:
    """Short MODE SENSE(6) allocation lengths (the original panicked below ~12) truncate instead."""
    full = answer(lu, cdb(Opcode.MODE_SENSE_6, page_code=0x0A, allocation_length=255)).data_in
    assert answer(lu, cdb(Opcode.MODE_SENSE_6, page_code=0x0A, allocation_length=alloc)).data_in == full[:alloc]


def test_mode_sense_bad_requests(lu: Dispatcher) -> None:
    """Page 0x03 (the original's log.Fatalf), a bad subpage and saved values are refused with the right sense."""
    assert_illegal(
        answer(lu, cdb(Opcode.MODE_SENSE_6, page_code=0x03, allocation_length=255)), scsi.INVALID_FIELD_IN_CDB, 2, 5
    )
    assert_illegal(
        answer(lu, cdb(Opcode.MODE_SENSE_10, page_code=0x0A, subpage_code=1, allocation_length=255)),
        scsi.INVALID_FIELD_IN_CDB,
        3,
    )
    assert_illegal(
        answer(lu, cdb(Opcode.MODE_SENSE_6, pc=3, page_code=0x0A, allocation_length=255)),
        scsi.SAVING_PARAMETERS_NOT_SUPPORTED,
        2,
        7,
    )
    changeable = answer(lu, cdb(Opcode.MODE_SENSE_6, pc=1, page_code=0x0A, allocation_length=255)).data_in
    assert not any(scsi.decode_mode6(changeable).pages[0].payload), "nothing is changeable"


def test_report_luns(lu: Dispatcher) -> None:
    """REPORT LUNS lists LUN 0; an allocation length below 16 or an unknown SELECT REPORT is an invalid field."""
    assert scsi.decode_lun_list(answer(lu, cdb(Opcode.REPORT_LUNS, allocation_length=16)).data_in).luns == (0,)
    assert_illegal(answer(lu, cdb(Opcode.REPORT_LUNS, allocation_length=15)), scsi.INVALID_FIELD_IN_CDB, 6)
    assert_illegal(
        answer(lu, cdb(Opcode.REPORT_LUNS, select_report=3, allocation_length=16)), scsi.INVALID_FIELD_IN_CDB, 2
    )


@pytest.mark.parametrize(
    "raw",
    [
        "25000000000000000000",  # READ CAPACITY(10): the original answered it with status byte 0x01
        "9e100000000000000000000000200000",  # SERVICE ACTION IN(16) / READ CAPACITY(16)
        "35000000000000000000",  # SYNCHRONIZE CACHE(10)
        "08000000010000",  # READ(6), and with a wrong length too
        "20000000000000000004",  # unknown opcode with NACA set: opcode check must come first
        "ff",
    ],
)
def test_unsupported_opcodes_get_invalid_opcode(lu: Dispatcher, raw: str) -> None:
    """Every unsupported opcode gives ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (20/00), not 24/00."""
    assert_illegal(answer(lu, bytes.fromhex(raw)), scsi.INVALID_COMMAND_OPERATION_CODE, 0, 7)


@pytest.mark.parametrize(
    ("raw", "byte", "bit"),
    [
        ("120000002400", None, None),  # valid INQUIRY as a baseline: handled below
        ("1200000024", 0, None),  # INQUIRY one byte short
        ("12000000240000", 0, None),  # INQUIRY one byte long
        ("120000002404", 5, 2),  # NACA
        ("120000002401", 5, 0),  # LINK
        ("120000002408", 5, 3),  # reserved CONTROL bit
        ("000000000000010000", 0, None),  # TEST UNIT READY with 9 bytes
    ],
)
def test_malformed_cdbs_get_invalid_field(lu: Dispatcher, raw: str, byte: int | None, bit: int | None) -> None:
    """Bad length, NACA/LINK and reserved bits give INVALID FIELD IN CDB with the field pointer."""
    resp = answer(lu, bytes.fromhex(raw))
    if byte is None:
        assert resp.status == Status.GOOD
        return
    assert_illegal(resp, scsi.INVALID_FIELD_IN_CDB, byte, bit)


# --- data path ----------------------------------------------------------------------


def test_write_delivers_a_batch(lu: Dispatcher, session: TargetSession) -> None:
    """A WRITE(16) carrying a 3-packet frame is GOOD and the packets come out of the session in order."""
    pkts = (b"\x45" + bytes(40), b"\x60" + bytes(80), b"\x45" + bytes(1499))
    frame = framing.encode_frame(framing.Frame(0, pkts))
    blocks = -(-len(frame) // 512)
    data = frame.ljust(blocks * 512, b"\0")
    assert answer(lu, cdb(Opcode.WRITE_16, lba=7, transfer_length=blocks), data) == Response(Status.GOOD)
    assert session.take_inbound() == list(pkts)


def test_read_answers_now_or_holds_until_deadline(lu: Dispatcher, session: TargetSession, clock: FakeClock) -> None:
    """A READ is answered at once when packets wait, held otherwise, and released empty at its deadline."""
    session.push(b"\x45" + bytes(99))
    now = answer(lu, cdb(Opcode.READ_16, transfer_length=19), cmd_id=1)
    assert framing.decode_frame(now.data_in).packets == (b"\x45" + bytes(99),)
    assert len(now.data_in) <= 19 * 512
    assert lu.handle(cdb(Opcode.READ_10, transfer_length=19), b"", 2) is None
    clock.now += 0.5
    assert session.completions() == []
    session.push(b"\x60" + bytes(10))
    [(cmd_id, data)] = session.completions()
    assert cmd_id == 2 and framing.decode_frame(data).packets == (b"\x60" + bytes(10),)
    assert lu.handle(cdb(Opcode.READ_16, transfer_length=1), b"", 3) is None
    clock.now += 1.0
    [(cmd_id, data)] = session.completions()
    assert cmd_id == 3 and framing.decode_frame(data).packets == ()


def test_read_write_limits(lu: Dispatcher) -> None:
    """Zero blocks is GOOD without data; too long a transfer, a range past capacity and RDPROTECT are refused."""
    assert answer(lu, cdb(Opcode.READ_16, transfer_length=0)) == Response(Status.GOOD)
    assert_illegal(answer(lu, cdb(Opcode.READ_16, transfer_length=8193)), scsi.INVALID_FIELD_IN_CDB, 10)
    assert_illegal(answer(lu, cdb(Opcode.WRITE_10, transfer_length=8193)), scsi.INVALID_FIELD_IN_CDB, 7)
    assert_illegal(answer(lu, cdb(Opcode.READ_16, lba=(1 << 31) - 1, transfer_length=2)), scsi.LBA_OUT_OF_RANGE)
    assert_illegal(answer(lu, cdb(Opcode.READ_16, lba=(1 << 64) - 1, transfer_length=1)), scsi.LBA_OUT_OF_RANGE)
    assert_illegal(answer(lu, cdb(Opcode.READ_16, rdprotect=1, transfer_length=1)), scsi.INVALID_FIELD_IN_CDB, 1, 7)


def test_bad_frames_are_refused_and_the_lu_keeps_working(lu: Dispatcher, session: TargetSession) -> None:
    """The original's crash (length prefix 0xFFFF past the buffer) and a truncated frame get CHECK CONDITION;
    a good frame afterwards is still delivered."""
    evil = bytearray(framing.encode_frame(framing.Frame(0, (b"x" * 100,))))
    evil[16:20] = (0xFFFF).to_bytes(4, "big")
    resp = answer(lu, cdb(Opcode.WRITE_16, transfer_length=1), bytes(evil).ljust(512, b"\0"))
    assert_illegal(resp, scsi.INVALID_FIELD_IN_PARAMETER_LIST)
    assert scsi.decode_sense(resp.sense).field_pointer == 16
    big = framing.encode_frame(framing.Frame(0, (b"y" * 600,)))
    assert_illegal(answer(lu, cdb(Opcode.WRITE_16, transfer_length=1), big), scsi.PARAMETER_LIST_LENGTH_ERROR)
    good = framing.encode_frame(framing.Frame(0, (b"z" * 10,)))
    assert answer(lu, cdb(Opcode.WRITE_16, transfer_length=1), good).status == Status.GOOD
    assert session.take_inbound() == [b"z" * 10]


class BrokenPath:
    """A data path with a bug, to prove a bug below the dispatcher cannot take the LU down."""

    def write(self, payload: bytes) -> None:
        raise RuntimeError("bug")

    def read(self, cmd_id: int, capacity: int) -> bytes | None:
        raise RuntimeError("bug")


def test_internal_bug_becomes_hardware_error() -> None:
    """An exception inside command handling becomes HARDWARE ERROR / INTERNAL TARGET FAILURE, never a raise."""
    resp = Dispatcher(data_path=BrokenPath()).handle(cdb(Opcode.WRITE_16, transfer_length=1), bytes(512))
    assert resp is not None
    sense = sense_of(resp)
    assert (sense.key, sense.additional_sense) == (SenseKey.HARDWARE_ERROR, (0x44, 0))


# --- properties ---------------------------------------------------------------------


@given(cdbs(), st.binary(max_size=1024))
@example(bytes.fromhex("120000000000"), b"")  # INQUIRY alloc 0
@example(bytes.fromhex("1a0003000000"), b"")  # MODE SENSE(6) page 3 alloc 0
def test_dispatcher_never_raises_and_answers_validly(raw: bytes, data_out: bytes) -> None:
    """For any CDB bytes and data-out, handle() returns GOOD without sense or CHECK CONDITION with valid
    ILLEGAL REQUEST fixed sense, or holds a well-formed READ; an internal failure never happens."""
    session = TargetSession(FakeClock())
    resp = Dispatcher(data_path=session).handle(raw, data_out, 1)
    if resp is None:
        assert scsi.decode_cdb(raw).opcode in scsi.READ_OPCODES
        assert list(session.held) == [1]
        return
    if resp.status == Status.GOOD:
        assert resp.sense == b""
        return
    sense = sense_of(resp)
    assert sense.key == SenseKey.ILLEGAL_REQUEST, f"unexpected sense {sense}"
    if raw and raw[0] not in scsi.CDB_LAYOUTS:
        assert sense.additional_sense == (0x20, 0x00)


@given(valid_cdbs([Opcode.INQUIRY, Opcode.MODE_SENSE_6, Opcode.MODE_SENSE_10, Opcode.REQUEST_SENSE]))
def test_data_in_never_exceeds_allocation_length(raw: bytes) -> None:
    """Data-in of every answered INQUIRY/MODE SENSE/REQUEST SENSE is at most its allocation length."""
    resp = Dispatcher().handle(raw)
    assert resp is not None
    assert len(resp.data_in) <= scsi.decode_cdb(raw)["allocation_length"]


@given(st.lists(packets(max_size=9000), min_size=1, max_size=8), st.integers(1, 64))
def test_read_never_exceeds_transfer_length(pkts: list[bytes], blocks: int) -> None:
    """A READ's frame always fits its transfer length; what does not fit stays queued, in order."""
    session = TargetSession(FakeClock())
    for p in pkts:
        session.push(p)
    resp = Dispatcher(data_path=session).handle(cdb(Opcode.READ_16, transfer_length=blocks), b"", 1)
    assert resp is not None and resp.status == Status.GOOD
    assert len(resp.data_in) <= blocks * 512
    got = framing.decode_frame(resp.data_in).packets
    assert list(got) + list(session.sender.queue) == pkts
