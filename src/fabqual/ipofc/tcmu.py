"""LIO TCMU (``target_core_user``) backend: the shared-memory command ring and its device.

Stdlib only (runs in the lab guests). :class:`Ring` is the protocol over any
writable buffer (the ``mmap`` of ``/dev/uioN`` at run time, a ``bytearray`` in
tests); :class:`TcmuDevice` is the thin kernel-facing part (find the UIO device,
mmap it, wait for and acknowledge interrupts). The backstore itself is created
by the LIO driver (:mod:`fabqual.drivers.lio`).

Offsets are those of Debian 12's ``/usr/include/linux/target_core_user.h`` as
compiled by gcc (``offsetof``): the ``req`` struct inside the packed entry is
*not* packed, so ``cdb_off`` sits at entry offset 24 and ``iov[]`` at 48 (the
research note's +20/+44 assumed packing and is wrong).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fabqual.errors import CodecError, DriverError
from fabqual.ipofc import scsi

MAILBOX_VERSION = 2
CAP_OOOC = 0x1
CAP_READ_LEN = 0x2
CAP_TMR = 0x4
CAP_KEEP_BUF = 0x8

OP_PAD = 0
OP_CMD = 1
OP_TMR = 2
OP_MASK = 0x7

UFLAG_UNKNOWN_OP = 0x1
UFLAG_READ_LEN = 0x2

# struct tcmu_mailbox
MB_VERSION, MB_FLAGS, MB_CMDR_OFF, MB_CMDR_SIZE, MB_CMD_HEAD, MB_CMD_TAIL = 0, 2, 4, 8, 12, 64
# struct tcmu_cmd_entry
ENT_LEN_OP, ENT_CMD_ID, ENT_KFLAGS, ENT_UFLAGS = 0, 4, 6, 7
REQ_IOV_CNT, REQ_IOV_BIDI_CNT, REQ_IOV_DIF_CNT, REQ_CDB_OFF, REQ_IOV = 8, 12, 16, 24, 48
RSP_SCSI_STATUS, RSP_READ_LEN, RSP_SENSE = 8, 12, 16
SENSE_BUFFERSIZE = 96
ENTRY_SIZE = 112  # sizeof(struct tcmu_cmd_entry); the kernel never posts a shorter command entry
IOVEC_SIZE = 16
# struct tcmu_tmr_entry
TMR_TYPE, TMR_CMD_CNT, TMR_CMD_IDS = 8, 12, 32
TMR_ABORT_TASK = 1


@dataclass(frozen=True)
class Command:
    """One SCSI command taken from the ring."""

    cmd_id: int
    cdb: bytes
    iovecs: tuple[tuple[int, int], ...]  # (offset into the map, length)

    @property
    def data_length(self) -> int:
        return sum(n for _, n in self.iovecs)


@dataclass(frozen=True)
class TaskManagement:
    """A TMR notification: the task management function and the command ids it aborts."""

    tmr_type: int
    cmd_ids: tuple[int, ...]


class Ring:
    """The TCMU command ring over a writable buffer (mmap or bytearray).

    Every offset and length read from the kernel is checked against the map before
    it is used; a violation raises :class:`CodecError` ("ring is broken"), it never
    reads or writes out of bounds.
    """

    def __init__(self, buf: mmap.mmap | bytearray) -> None:
        self.buf = buf
        self.view = memoryview(buf)
        version, self.flags, self.cmdr_off, self.cmdr_size = struct.unpack_from("<HHII", buf, 0)
        if version != MAILBOX_VERSION:
            raise CodecError(f"TCMU mailbox version {version} is not {MAILBOX_VERSION}: unsupported kernel")
        if self.cmdr_off < MB_CMD_TAIL + 4 or self.cmdr_off + self.cmdr_size > len(buf) or self.cmdr_size % 8:
            raise CodecError(f"TCMU ring at {self.cmdr_off}+{self.cmdr_size} does not fit the {len(buf)}-byte map")
        self.parsed = self._u32(MB_CMD_TAIL)  # where the next unseen entry starts
        # Completed responses waiting for a slot at the tail, oldest completion first.
        self.responses: dict[int, tuple[int, bytes, int | None]] = {}
        self.outstanding: set[int] = set()

    @property
    def out_of_order(self) -> bool:
        return bool(self.flags & CAP_OOOC)

    def _u32(self, off: int) -> int:
        return int(struct.unpack_from("<I", self.buf, off)[0])

    def _entry(self, pos: int) -> tuple[int, int, int]:
        """(opcode, length, cmd_id) of the entry at ring position ``pos``."""
        base = self.cmdr_off + pos
        len_op, cmd_id = struct.unpack_from("<IH", self.buf, base)
        length = len_op & ~OP_MASK
        if length < 8 or pos + length > self.cmdr_size:
            raise CodecError(f"TCMU entry at ring offset {pos} has length {length}: ring is broken")
        return len_op & OP_MASK, length, cmd_id

    def _checked(self, off: int, length: int, what: str) -> None:
        if off < self.cmdr_off + self.cmdr_size or off + length > len(self.buf) or length < 0:
            raise CodecError(f"TCMU {what} at {off}+{length} lies outside the data area")

    def poll(self) -> Iterator[Command | TaskManagement]:
        """Entries the kernel posted since the last call (PAD entries skipped)."""
        head = self._u32(MB_CMD_HEAD)
        if head >= self.cmdr_size:
            raise CodecError(f"TCMU cmd_head {head} outside the {self.cmdr_size}-byte ring")
        while self.parsed != head:
            op, length, cmd_id = self._entry(self.parsed)
            base = self.cmdr_off + self.parsed
            entry: Command | TaskManagement | None = None
            if op == OP_CMD:
                if length < ENTRY_SIZE:  # the response (status, read_len, 96-byte sense) must fit the slot
                    raise CodecError(
                        f"TCMU command entry of {length} bytes is shorter than {ENTRY_SIZE}: ring is broken"
                    )
                entry = self._command(base, length, cmd_id)
            elif op == OP_TMR:
                entry = self._tmr(base, length)
            elif op != OP_PAD:
                self.buf[base + ENT_UFLAGS] |= UFLAG_UNKNOWN_OP
            # Past this entry *before* yielding: a completion made by the consumer meanwhile
            # must be able to move the tail over it (else it waits for the next complete()).
            self.parsed = (self.parsed + length) % self.cmdr_size
            if entry is not None:
                yield entry

    def _command(self, base: int, length: int, cmd_id: int) -> Command:
        # Explicit offsets: cdb_off is 8-aligned at +24, after 4 bytes of padding ("<IIIQ" would read +20).
        iov_cnt, bidi, dif = struct.unpack_from("<III", self.buf, base + REQ_IOV_CNT)
        (cdb_off,) = struct.unpack_from("<Q", self.buf, base + REQ_CDB_OFF)
        count = iov_cnt + bidi + dif
        if REQ_IOV + count * IOVEC_SIZE > length:
            raise CodecError(f"TCMU command {cmd_id}: {count} iovecs do not fit its {length}-byte entry")
        iovecs = tuple(struct.unpack_from("<QQ", self.buf, base + REQ_IOV + i * IOVEC_SIZE) for i in range(iov_cnt))
        for off, n in iovecs:
            self._checked(off, n, f"command {cmd_id} iovec")
        if cdb_off >= len(self.buf):
            raise CodecError(f"TCMU command {cmd_id}: CDB offset {cdb_off} outside the map")
        cdb_len = scsi.group_length(self.buf[cdb_off]) or 16
        cdb = bytes(self.view[cdb_off : min(cdb_off + cdb_len, len(self.buf))])
        self.outstanding.add(cmd_id)
        return Command(cmd_id, cdb, iovecs)

    def _tmr(self, base: int, length: int) -> TaskManagement:
        tmr_type = self.buf[base + TMR_TYPE]
        count = self._u32(base + TMR_CMD_CNT)
        if TMR_CMD_IDS + 2 * count > length:
            raise CodecError(f"TCMU TMR entry lists {count} commands in {length} bytes: ring is broken")
        ids = struct.unpack_from(f"<{count}H", self.buf, base + TMR_CMD_IDS)
        return TaskManagement(tmr_type, tuple(ids))

    def gather(self, command: Command) -> bytes:
        """The command's data-out, concatenated from its iovecs."""
        return b"".join(bytes(self.view[off : off + n]) for off, n in command.iovecs)

    def scatter(self, command: Command, data: bytes) -> int:
        """Copy data-in into the command's iovecs; returns bytes written (at most the iovec total)."""
        done = 0
        for off, n in command.iovecs:
            chunk = data[done : done + n]
            self.view[off : off + len(chunk)] = chunk
            done += len(chunk)
            if done >= len(data):
                break
        return done

    def complete(self, cmd_id: int, status: int, sense: bytes = b"", read_len: int | None = None) -> bool:
        """Complete ``cmd_id``; True when the tail moved (then kick the kernel with a 4-byte write).

        Out of order (CAP_OOOC): the response goes into the slot at ``cmd_tail`` whose
        ``cmd_id`` is overwritten, as libtcmu does. Without OOOC a completion that is
        not the tail's command waits until it is.
        """
        if cmd_id not in self.outstanding:
            raise CodecError(f"TCMU command {cmd_id} is not outstanding: completing it would break the ring")
        if len(sense) > SENSE_BUFFERSIZE:
            raise CodecError(f"sense of {len(sense)} bytes exceeds TCMU's {SENSE_BUFFERSIZE}")
        self.outstanding.discard(cmd_id)
        self.responses[cmd_id] = (status, sense, read_len)
        return self._advance()

    def _advance(self) -> bool:
        tail = self._u32(MB_CMD_TAIL)
        moved = False
        while tail != self.parsed:
            op, length, slot_id = self._entry(tail)
            base = self.cmdr_off + tail
            if op == OP_CMD:
                if self.out_of_order and self.responses:
                    cmd_id = next(iter(self.responses))
                elif slot_id in self.responses:
                    cmd_id = slot_id
                else:
                    break
                status, sense, read_len = self.responses.pop(cmd_id)
                struct.pack_into("<H", self.buf, base + ENT_CMD_ID, cmd_id)
                self.buf[base + RSP_SCSI_STATUS] = status
                if read_len is not None and self.flags & CAP_READ_LEN:
                    self.buf[base + ENT_UFLAGS] |= UFLAG_READ_LEN
                    struct.pack_into("<I", self.buf, base + RSP_READ_LEN, read_len)
                self.view[base + RSP_SENSE : base + RSP_SENSE + SENSE_BUFFERSIZE] = sense.ljust(SENSE_BUFFERSIZE, b"\0")
            tail = (tail + length) % self.cmdr_size
            struct.pack_into("<I", self.buf, MB_CMD_TAIL, tail)
            moved = True
        return moved


class TcmuDevice:
    """The UIO device of one TCMU backstore: mmap, interrupt wait, kick."""

    def __init__(self, uio: str, map_size: int) -> None:
        self.uio = uio
        try:
            self.fd = os.open(f"/dev/{uio}", os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise DriverError(
                f"cannot open /dev/{uio}: {err.strerror}; is another handler (tcmu-runner) using it?"
            ) from err
        self.map = mmap.mmap(self.fd, map_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.ring = Ring(self.map)

    @classmethod
    def find(cls, backstore: str, sysfs: Path = Path("/sys/class/uio")) -> TcmuDevice:
        """Open the UIO device whose name is ``tcm-user/<hba>/<backstore>/<subtype>/<cfg>``."""
        for entry in sorted(sysfs.glob("uio*")):
            name = (entry / "name").read_text().strip()
            parts = name.split("/", 4)
            if len(parts) >= 3 and parts[0] == "tcm-user" and parts[2] == backstore:
                size = int((entry / "maps" / "map0" / "size").read_text().strip(), 0)
                return cls(entry.name, size)
        raise DriverError(f"no /sys/class/uio device for TCMU backstore {backstore!r}: is it enabled?")

    @classmethod
    def open_handler(cls, uio: str, handler: str, sysfs: Path = Path("/sys/class/uio")) -> TcmuDevice:
        """Open ``uio`` (``uioN``, ``/dev/uioN`` or ``auto``) after checking it is a TCMU device of ``handler``.

        ``auto`` picks the only device whose ``dev_config`` subtype is ``handler``;
        the uio name is ``tcm-user/<hba>/<backstore>/<subtype>/<cfg>``.
        """
        candidates = sorted(sysfs.glob("uio*")) if uio == "auto" else [sysfs / uio.removeprefix("/dev/")]
        mine = []
        for entry in candidates:
            try:
                name = (entry / "name").read_text().strip()
            except OSError:
                raise DriverError(f"{uio}: no such UIO device in {sysfs}; is the TCMU backstore enabled?") from None
            parts = name.split("/", 4)
            if len(parts) >= 4 and parts[0] == "tcm-user" and parts[3] == handler:
                mine.append(entry)
            elif uio != "auto":
                raise DriverError(
                    f"{uio} is {name!r}, not a TCMU backstore with dev_config={handler}/...; refusing to serve it"
                )
        if len(mine) != 1:
            raise DriverError(
                f"{len(mine)} TCMU UIO devices with dev_config={handler}/... ({', '.join(e.name for e in mine)});"
                " pass --uio /dev/uioN or --backstore NAME"
            )
        size = int((mine[0] / "maps" / "map0" / "size").read_text().strip(), 0)
        return cls(mine[0].name, size)

    def name(self, sysfs: Path = Path("/sys/class/uio")) -> str:
        """The uio name: ``tcm-user/<hba>/<backstore>/<subtype>/<cfg>``."""
        return (sysfs / self.uio / "name").read_text().strip()

    def wait(self) -> None:
        """Block until the kernel posts (consumes the UIO interrupt count)."""
        os.read(self.fd, 4)

    def kick(self) -> None:
        """Tell the kernel the tail moved."""
        os.write(self.fd, b"\0\0\0\0")

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)
