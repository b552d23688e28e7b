"""TCMU ring protocol on an in-memory map laid out exactly as the kernel lays out /dev/uioN.

No TCMU-capable kernel runs on the development host (no configfs), so the kernel's
side of the ring is written here by hand from the uapi header. The offsets the
test uses are literals taken from compiling Debian 12's
``/usr/include/linux/target_core_user.h`` with gcc and printing ``offsetof``::

    mb tail 64 size 128
    cdb_off 24 iov 48 rsp.read_len 12 sense 16 entry 112
    tmr type 8 cnt 12 ids 32

so a wrong constant in ``tcmu.py`` fails here rather than on the lab guest.
"""

from __future__ import annotations

import struct

import pytest

from fabqual.errors import CodecError
from fabqual.ipofc import scsi, tcmu
from fabqual.ipofc.dispatch import Dispatcher
from fabqual.ipofc.scsi import Opcode, Status

CMDR_OFF = 128
CMDR_SIZE = 4096
DATA_OFF = CMDR_OFF + CMDR_SIZE
MAP_SIZE = DATA_OFF + 64 * 1024


class FakeKernel:
    """Writes ring entries the way target_core_user.c does (queue_cmd_ring / queue_tmr_ring)."""

    def __init__(self, flags: int = tcmu.CAP_OOOC | tcmu.CAP_READ_LEN | tcmu.CAP_TMR) -> None:
        self.map = bytearray(MAP_SIZE)
        struct.pack_into("<HHIII", self.map, 0, 2, flags, CMDR_OFF, CMDR_SIZE, 0)
        self.head = 0
        self.data = DATA_OFF

    def _publish(self, length: int) -> int:
        pos = self.head
        self.head = (self.head + length) % CMDR_SIZE
        struct.pack_into("<I", self.map, 12, self.head)
        return CMDR_OFF + pos

    def command(self, cmd_id: int, cdb: bytes, data: bytes = b"", data_len: int = 0) -> int:
        """Post a command as tcmu_queue_cmd_ring does: the entry is at least sizeof(tcmu_cmd_entry) = 112
        bytes, the CDB follows it inside the ring, one iovec of ``data_len`` (filled with ``data``) in the data area."""
        size = max(data_len, len(data))
        iov_off = self.data
        self.map[iov_off : iov_off + len(data)] = data
        self.data = iov_off + ((size + 7) & ~7)
        iovs = [(iov_off, size)] if size else []
        base_size = max(48 + 16 * len(iovs), 112)
        length = base_size + ((len(cdb) + 7) & ~7)
        base = self._publish(length)
        cdb_off = base + base_size
        self.map[cdb_off : cdb_off + len(cdb)] = cdb
        struct.pack_into("<IHBB", self.map, base, length | tcmu.OP_CMD, cmd_id, 0, 0)
        struct.pack_into("<III", self.map, base + 8, len(iovs), 0, 0)
        struct.pack_into("<Q", self.map, base + 24, cdb_off)  # as the kernel lays it out (8-aligned)
        for i, (off, n) in enumerate(iovs):
            struct.pack_into("<QQ", self.map, base + 48 + 16 * i, off, n)
        return base

    def pad(self, length: int) -> None:
        base = self._publish(length)
        struct.pack_into("<I", self.map, base, length | tcmu.OP_PAD)

    def tmr(self, tmr_type: int, ids: list[int]) -> None:
        length = (32 + 2 * len(ids) + 7) & ~7
        base = self._publish(length)
        struct.pack_into("<IHBB", self.map, base, length | tcmu.OP_TMR, 0, 0, 0)
        struct.pack_into("<BBHI", self.map, base + 8, tmr_type, 0, 0, len(ids))
        struct.pack_into(f"<{len(ids)}H", self.map, base + 32, *ids)

    def tail(self) -> int:
        return int(struct.unpack_from("<I", self.map, 64)[0])

    def response(self, base: int) -> tuple[int, int, int, int, bytes]:
        """(cmd_id, uflags, status, read_len, sense) of a completed slot."""
        cmd_id, _k, uflags = struct.unpack_from("<HBB", self.map, base + 4)
        status, read_len = self.map[base + 8], struct.unpack_from("<I", self.map, base + 12)[0]
        return cmd_id, uflags, status, read_len, bytes(self.map[base + 16 : base + 112])


def test_offsets_match_the_compiled_header() -> None:
    """The module's offsets equal gcc's offsetof() on the kernel uapi header (values in the module docstring)."""
    assert (tcmu.MB_CMD_TAIL, tcmu.REQ_CDB_OFF, tcmu.REQ_IOV) == (64, 24, 48)
    assert (tcmu.RSP_READ_LEN, tcmu.RSP_SENSE, tcmu.RSP_SENSE + tcmu.SENSE_BUFFERSIZE, tcmu.ENTRY_SIZE) == (
        12,
        16,
        112,
        112,
    )
    assert (tcmu.TMR_TYPE, tcmu.TMR_CMD_CNT, tcmu.TMR_CMD_IDS) == (8, 12, 32)


def test_inquiry_through_the_ring() -> None:
    """An INQUIRY posted by the kernel is parsed, answered into its iovec, completed with READ_LEN, tail advanced."""
    k = FakeKernel()
    slot = k.command(7, scsi.encode_cdb(Opcode.INQUIRY, allocation_length=96), data_len=96)
    ring = tcmu.Ring(k.map)
    [cmd] = list(ring.poll())
    assert isinstance(cmd, tcmu.Command) and cmd.cmd_id == 7 and cmd.data_length == 96
    resp = Dispatcher().handle(cmd.cdb)
    assert resp is not None
    assert ring.scatter(cmd, resp.data_in) == 36
    assert ring.complete(7, resp.status, resp.sense, read_len=36)
    assert k.tail() == k.head
    cmd_id, uflags, status, read_len, _ = k.response(slot)
    assert (cmd_id, uflags & tcmu.UFLAG_READ_LEN, status, read_len) == (7, tcmu.UFLAG_READ_LEN, 0, 36)
    assert scsi.decode_inquiry(k.map[cmd.iovecs[0][0] : cmd.iovecs[0][0] + 36]).vendor == "FABQUAL"


def test_completing_inside_the_poll_loop_moves_the_tail() -> None:
    """A command completed while ``poll()`` is still iterating moves the tail at once, as the daemon
    does it (found on the lab's kernel: the tail stayed put and LIO aborted every INQUIRY)."""
    k = FakeKernel()
    k.command(3, scsi.encode_cdb(Opcode.TEST_UNIT_READY))
    k.command(4, scsi.encode_cdb(Opcode.TEST_UNIT_READY))
    ring = tcmu.Ring(k.map)
    moved = []
    for cmd in ring.poll():
        assert isinstance(cmd, tcmu.Command)
        moved.append(ring.complete(cmd.cmd_id, Status.GOOD))
    assert moved == [True, True] and k.tail() == k.head


def test_check_condition_writes_sense() -> None:
    """A CHECK CONDITION completion puts status 2 and the fixed sense into the slot's 96-byte sense buffer."""
    k = FakeKernel()
    slot = k.command(1, bytes.fromhex("25000000000000000000"))
    ring = tcmu.Ring(k.map)
    [cmd] = list(ring.poll())
    assert isinstance(cmd, tcmu.Command)
    resp = Dispatcher().handle(cmd.cdb)
    assert resp is not None
    ring.complete(1, resp.status, resp.sense)
    _, _, status, _, sense = k.response(slot)
    assert status == Status.CHECK_CONDITION
    assert scsi.decode_sense(sense).additional_sense == (0x20, 0x00)


def test_out_of_order_completion_reuses_the_tail_slot() -> None:
    """With CAP_OOOC, completing a later command first writes it into the tail slot (cmd_id rewritten)."""
    k = FakeKernel()
    first = k.command(1, scsi.encode_cdb(Opcode.READ_16, transfer_length=1), data_len=512)
    second = k.command(2, scsi.encode_cdb(Opcode.TEST_UNIT_READY))
    ring = tcmu.Ring(k.map)
    assert [c.cmd_id for c in ring.poll() if isinstance(c, tcmu.Command)] == [1, 2]
    assert ring.complete(2, Status.GOOD)
    assert k.response(first)[0] == 2 and k.tail() == second - CMDR_OFF
    assert ring.complete(1, Status.GOOD, read_len=0)
    assert k.response(second)[0] == 1 and k.tail() == k.head


def test_in_order_ring_waits_for_the_tail_command() -> None:
    """Without CAP_OOOC, a completion that is not at the tail waits; the tail moves once the head one completes."""
    k = FakeKernel(flags=tcmu.CAP_READ_LEN)
    k.command(1, scsi.encode_cdb(Opcode.TEST_UNIT_READY))
    k.command(2, scsi.encode_cdb(Opcode.TEST_UNIT_READY))
    ring = tcmu.Ring(k.map)
    list(ring.poll())
    assert not ring.complete(2, Status.GOOD) and k.tail() == 0
    assert ring.complete(1, Status.GOOD) and k.tail() == k.head


def test_pad_and_tmr_entries() -> None:
    """PAD entries are skipped; a TMR lists the aborted ids; the tail moves over both once commands complete."""
    k = FakeKernel()
    k.pad(64)
    k.tmr(tcmu.TMR_ABORT_TASK, [5, 6])
    k.command(3, scsi.encode_cdb(Opcode.TEST_UNIT_READY))
    ring = tcmu.Ring(k.map)
    entries = list(ring.poll())
    assert entries[0] == tcmu.TaskManagement(tcmu.TMR_ABORT_TASK, (5, 6))
    assert isinstance(entries[1], tcmu.Command) and entries[1].cmd_id == 3
    assert ring.complete(3, Status.GOOD) and k.tail() == k.head


def test_write_data_is_gathered() -> None:
    """gather() returns the data-out bytes the kernel put in the command's iovecs."""
    k = FakeKernel()
    k.command(4, scsi.encode_cdb(Opcode.WRITE_16, transfer_length=1), data=b"frame".ljust(512, b"\0"))
    ring = tcmu.Ring(k.map)
    [cmd] = list(ring.poll())
    assert isinstance(cmd, tcmu.Command) and ring.gather(cmd)[:5] == b"frame"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda k, base: struct.pack_into("<I", k.map, base, tcmu.OP_CMD), "length 0"),
        (lambda k, base: struct.pack_into("<I", k.map, base, 64 | tcmu.OP_CMD), "shorter than"),
        (lambda k, base: struct.pack_into("<Q", k.map, base + 48, MAP_SIZE - 8), "outside the data area"),
        (lambda k, base: struct.pack_into("<I", k.map, base + 8, 1000), "do not fit"),
        (lambda k, base: struct.pack_into("<Q", k.map, base + 24, MAP_SIZE + 5), "CDB offset"),
        (lambda k, base: struct.pack_into("<I", k.map, 12, CMDR_SIZE + 8), "cmd_head"),
    ],
    ids=["zero-length", "short-entry", "iovec-outside", "iov-count", "cdb-offset", "head"],
)
def test_broken_ring_is_reported_not_followed(breakage: object, message: str) -> None:
    """Entries whose lengths or offsets point outside the map raise CodecError instead of reading wild memory."""
    k = FakeKernel()
    base = k.command(1, scsi.encode_cdb(Opcode.WRITE_16, transfer_length=1), data_len=512)
    breakage(k, base)  # type: ignore[operator]
    with pytest.raises(CodecError, match=message):
        list(tcmu.Ring(k.map).poll())


def test_completing_unknown_or_twice_is_refused() -> None:
    """Completing a command id that is not outstanding (the kernel would mark the ring broken) raises instead."""
    k = FakeKernel()
    k.command(1, scsi.encode_cdb(Opcode.TEST_UNIT_READY))
    ring = tcmu.Ring(k.map)
    list(ring.poll())
    with pytest.raises(CodecError, match="not outstanding"):
        ring.complete(9, Status.GOOD)
    ring.complete(1, Status.GOOD)
    with pytest.raises(CodecError, match="not outstanding"):
        ring.complete(1, Status.GOOD)


def test_bad_mailbox_is_refused() -> None:
    """A mailbox with another version or a ring that does not fit the map is refused at open."""
    k = FakeKernel()
    k.map[0] = 3
    with pytest.raises(CodecError, match="version 3"):
        tcmu.Ring(k.map)
    k = FakeKernel()
    struct.pack_into("<I", k.map, 8, MAP_SIZE)
    with pytest.raises(CodecError, match="does not fit"):
        tcmu.Ring(k.map)
