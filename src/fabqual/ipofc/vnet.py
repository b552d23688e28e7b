"""The virtio-net header a peer's offloaded packet carries, checked before the kernel sees it.

With offload each tunnel record is ``struct virtio_net_hdr`` (10 bytes, little-endian
as TUN uses it on x86 without ``TUNSETVNETBE``) followed by the IP packet::

    0  flags        bit0 NEEDS_CSUM, bit1 DATA_VALID
    1  gso_type     0 NONE, 1 TCPV4, 4 TCPV6 (| 0x80 ECN); UDP (3, 5) is not negotiated here
    2  hdr_len      bytes of headers before the payload (a hint, at most the packet)
    4  gso_size     payload bytes per segment (0 without GSO)
    6  csum_start   where checksumming starts, from the IP header
    8  csum_offset  where the checksum is stored, from csum_start

The peer is another node: its header is input, not trusted. The kernel checks some of
this itself, but a header the device never negotiated (UDP GSO), TCP segmentation
of a packet that is not TCP, a segment size of 0 or a checksum written past the
packet or anywhere but a TCP/UDP checksum field is refused here, counted by reason, and never
reaches ``write()`` (see ``tun.py``). Pure; stdlib only (runs in the lab guests).
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<BBHHHH")
SIZE = HEADER.size
F_NEEDS_CSUM, F_DATA_VALID = 0x01, 0x02
GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_ECN = 0, 1, 4, 0x80
IP_HEADER_MIN = {4: 20, 6: 40}
GSO_IP_VERSION = {GSO_TCPV4: 4, GSO_TCPV6: 6}
IPPROTO_TCP = 6
TCP_CSUM_OFFSET = 16
CSUM_OFFSETS = (6, 16)  # where UDP and TCP keep their checksums: the only partial checksums TUN hands out


def problem(record: bytes) -> str | None:
    """Why ``record`` (header + IP packet) must not go to the kernel, as ``reason: detail``; None if valid."""
    if len(record) <= SIZE:
        return f"short: {len(record)} bytes, a virtio-net header and an IP packet need more than {SIZE}"
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = HEADER.unpack_from(record)
    length = len(record) - SIZE
    version = record[SIZE] >> 4
    if version not in IP_HEADER_MIN:
        return f"ip_version: the packet starts with IP version {version}, not 4 or 6"
    if flags & ~(F_NEEDS_CSUM | F_DATA_VALID):
        return f"flags: 0x{flags:02x} has bits other than NEEDS_CSUM and DATA_VALID"
    base = gso_type & ~GSO_ECN
    if base == GSO_NONE:
        if gso_type != GSO_NONE or gso_size:
            return f"gso_type: 0x{gso_type:02x} with gso_size {gso_size}: no GSO must have neither ECN nor a size"
    else:
        if base not in GSO_IP_VERSION:
            return f"gso_type: 0x{gso_type:02x} was not negotiated (TCPv4 1, TCPv6 4, optionally | 0x80)"
        if GSO_IP_VERSION[base] != version:
            return f"gso_type: 0x{gso_type:02x} on an IPv{version} packet"
        if not 1 <= gso_size < length:
            return f"gso_size: {gso_size} outside 1..{length - 1} for a {length}-byte packet"
        if not flags & F_NEEDS_CSUM:
            return "gso_type: a GSO packet without NEEDS_CSUM"
        packet = record[SIZE:]
        at = 9 if version == 4 else 6  # IPv4 protocol, IPv6 next header
        protocol = packet[at] if len(packet) > at else -1
        if protocol != IPPROTO_TCP:
            return f"gso_type: TCP segmentation of an IPv{version} packet whose protocol is {protocol}, not TCP"
        if csum_offset != TCP_CSUM_OFFSET:
            return f"csum_offset: {csum_offset} in a TCP super-packet, the TCP checksum is at {TCP_CSUM_OFFSET}"
    if hdr_len > length:
        return f"hdr_len: {hdr_len} beyond the {length}-byte packet"
    if flags & F_NEEDS_CSUM:
        if csum_start < IP_HEADER_MIN[version]:
            return f"csum_start: {csum_start} inside the IPv{version} header"
        if csum_offset not in CSUM_OFFSETS:
            return f"csum_offset: {csum_offset} is neither UDP's (6) nor TCP's (16) checksum"
        if csum_start + csum_offset + 2 > length:
            return f"csum_start: {csum_start} + csum_offset {csum_offset} + 2 beyond the {length}-byte packet"
    return None


def encode(
    *,
    flags: int = 0,
    gso_type: int = GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    """A header with these fields (any values: the tests and the fuzzer write invalid ones)."""
    return HEADER.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
