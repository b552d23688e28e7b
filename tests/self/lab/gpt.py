"""A GPT writer run inside a lab guest (``python3 - DEVICE``): the guests have no sgdisk/sfdisk/parted.

It writes what ``sgdisk -n 1:0:0`` would: a protective MBR, the primary header
and entry array, one Linux partition from 1 MiB to the last usable block, and
the backup array and header, with valid CRC32s, in the device's logical block
size (null_blk here uses 4096, loop devices 512). Test-only: fabqual itself
never writes partition tables.
"""

GPT_SCRIPT = r"""
import os, struct, sys, uuid, zlib

path = sys.argv[1]
name = os.path.basename(os.path.realpath(path))
try:
    block = int(open(f"/sys/class/block/{name}/queue/logical_block_size").read())
except OSError:
    block = 512  # an image file
fd = os.open(path, os.O_RDWR)
blocks = os.lseek(fd, 0, os.SEEK_END) // block
entry_blocks = (128 * 128 + block - 1) // block
first_usable, last_usable = 2 + entry_blocks, blocks - 2 - entry_blocks
linux = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4").bytes_le
entries = bytearray(entry_blocks * block)
entries[0:128] = struct.pack(
    "<16s16sQQQ72s", linux, uuid.uuid4().bytes_le, (1 << 20) // block, last_usable, 0, "scratch".encode("utf-16-le")
)
entries_crc = zlib.crc32(bytes(entries[: 128 * 128]))
disk = uuid.uuid4().bytes_le


def header(mine, other, array):
    fields = [b"EFI PART", 0x10000, 92, 0, 0, mine, other, first_usable, last_usable]
    fields += [disk, array, 128, 128, entries_crc]
    raw = struct.pack("<8sIIIIQQQQ16sQIII", *fields)
    fields[3] = zlib.crc32(raw)
    return struct.pack("<8sIIIIQQQQ16sQIII", *fields).ljust(block, b"\0")


mbr = bytearray(block)
mbr[446:462] = struct.pack("<BBBBBBBBII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, min(blocks - 1, 0xFFFFFFFF))
mbr[510:512] = b"\x55\xaa"
os.pwrite(fd, bytes(mbr), 0)
os.pwrite(fd, header(1, blocks - 1, 2), block)
os.pwrite(fd, bytes(entries), 2 * block)
os.pwrite(fd, bytes(entries), (blocks - 1 - entry_blocks) * block)
os.pwrite(fd, header(blocks - 1, 1, blocks - 1 - entry_blocks), (blocks - 1) * block)
os.fsync(fd)
os.close(fd)
"""
