"""Protocol fields as data: big-endian bit/byte fields laid over a fixed-size byte string.

A :class:`Layout` is a table of :class:`Field` rows (name, byte offset, size or bit
range). It packs a mapping of values into bytes and unpacks bytes back into a
mapping; every bit not covered by a field is *reserved*, and unpacking rejects a
set reserved bit with a :class:`FieldError` that says where it is (the SCSI field
pointer needs exactly that). Stdlib only: this module runs in the lab guests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fabqual.errors import CodecError


class FieldError(CodecError):
    """A byte string breaks its layout at a known place (byte offset and, if known, bit)."""

    def __init__(self, message: str, byte: int, bit: int | None = None) -> None:
        self.byte = byte
        self.bit = bit
        super().__init__(message)


@dataclass(frozen=True)
class Field:
    """One field: ``size`` whole bytes at ``offset``, or ``bits`` bits starting at bit ``shift``."""

    name: str
    offset: int
    size: int = 1
    shift: int = 0
    bits: int = 0

    @property
    def width(self) -> int:
        """Width of the field in bits."""
        return self.bits or 8 * self.size

    @property
    def maximum(self) -> int:
        """Largest value the field can hold."""
        return (1 << self.width) - 1

    def get(self, raw: bytes | bytearray | memoryview) -> int:
        """The field's value in ``raw`` (which must be long enough)."""
        if self.bits:
            return (raw[self.offset] >> self.shift) & self.maximum
        return int.from_bytes(raw[self.offset : self.offset + self.size], "big")

    def put(self, buf: bytearray, value: int) -> None:
        """Write ``value`` into ``buf``; a value that does not fit raises :class:`FieldError`."""
        if not 0 <= value <= self.maximum:
            raise FieldError(
                f"field {self.name}={value} does not fit in {self.width} bits (0..{self.maximum})",
                self.offset,
                self.shift if self.bits else None,
            )
        if self.bits:
            mask = self.maximum << self.shift
            buf[self.offset] = (buf[self.offset] & ~mask) | (value << self.shift)
        else:
            buf[self.offset : self.offset + self.size] = value.to_bytes(self.size, "big")


class Layout:
    """A fixed-length structure: its fields and, implicitly, its reserved bits."""

    def __init__(self, name: str, length: int, fields: tuple[Field, ...]) -> None:
        self.name = name
        self.length = length
        self.fields = fields
        self.by_name = {f.name: f for f in fields}
        if len(self.by_name) != len(fields):
            raise ValueError(f"layout {name}: duplicate field names")
        covered = bytearray(length)
        for f in fields:
            if f.offset + (1 if f.bits else f.size) > length:
                raise ValueError(f"layout {name}: field {f.name} runs past byte {length - 1}")
            if f.bits:
                covered[f.offset] |= f.maximum << f.shift
            else:
                covered[f.offset : f.offset + f.size] = b"\xff" * f.size
        # Reserved mask per byte: the bits no field claims.
        self.reserved = bytes(~c & 0xFF for c in covered)

    def pack(self, values: Mapping[str, int]) -> bytes:
        """Bytes for ``values``; unknown names or values that do not fit raise :class:`FieldError`."""
        unknown = set(values) - set(self.by_name)
        if unknown:
            raise FieldError(f"{self.name} has no field(s) {', '.join(sorted(unknown))}", 0)
        buf = bytearray(self.length)
        for name, value in values.items():
            self.by_name[name].put(buf, value)
        return bytes(buf)

    def unpack(self, raw: bytes | bytearray | memoryview, *, check_reserved: bool = True) -> dict[str, int]:
        """Field values of ``raw``: exactly :attr:`length` bytes, reserved bits zero."""
        if len(raw) != self.length:
            raise FieldError(f"{self.name} must be {self.length} bytes, got {len(raw)}", min(len(raw), self.length))
        if check_reserved:
            self.check_reserved(raw)
        return {f.name: f.get(raw) for f in self.fields}

    def check_reserved(self, raw: bytes | bytearray | memoryview) -> None:
        """Raise :class:`FieldError` at the first set reserved bit of ``raw``."""
        for i, mask in enumerate(self.reserved):
            bad = raw[i] & mask
            if bad:
                bit = bad.bit_length() - 1
                raise FieldError(f"{self.name}: reserved bit {bit} of byte {i} is set (byte = 0x{raw[i]:02x})", i, bit)
