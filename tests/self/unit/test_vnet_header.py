"""The virtio-net header check (fabqual.ipofc.vnet): what a peer may hand to the kernel with offload on.

The headers that must pass are the shapes Linux's TUN writes itself
(``virtio_net_hdr_from_skb``: a TCPv4/v6 super-packet with NEEDS_CSUM, a plain packet
with or without a partial checksum); the real kernel's records are checked in
``test_tun_offload.py``. Every rejection names the field.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabqual.ipofc import vnet

IPV4 = bytes([0x45]) + bytes(8) + bytes([6]) + bytes(1490)  # 1500 bytes of IPv4 carrying TCP (version, protocol)
IPV6 = bytes([0x60]) + bytes(5) + bytes([6]) + bytes(1493)  # IPv6, next header TCP
UDP4 = IPV4[:9] + bytes([17]) + IPV4[10:]
TSO4 = vnet.encode(flags=1, gso_type=1, hdr_len=66, gso_size=1448, csum_start=20, csum_offset=16)


@pytest.mark.parametrize(
    "record",
    [
        vnet.encode() + IPV4,
        vnet.encode(flags=vnet.F_DATA_VALID) + IPV6,
        vnet.encode(flags=1, csum_start=20, csum_offset=16) + IPV4,
        TSO4 + IPV4,
        vnet.encode(flags=1, gso_type=0x84, hdr_len=86, gso_size=1428, csum_start=40, csum_offset=16) + IPV6,
    ],
    ids=["plain", "data-valid-v6", "partial-csum", "tso4", "tso6-ecn"],
)
def test_headers_the_kernel_writes_pass(record: bytes) -> None:
    """Shapes TUN itself produces are accepted."""
    assert vnet.problem(record) is None


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (vnet.encode(), "short"),
        (vnet.encode() + b"\x00" + IPV4[1:], "ip_version"),
        (vnet.encode(flags=0x84) + IPV4, "flags"),
        (vnet.encode(flags=1, gso_type=3, gso_size=1400, csum_start=20, csum_offset=6) + IPV4, "gso_type"),
        (vnet.encode(flags=1, gso_type=4, gso_size=1400, csum_start=40, csum_offset=16) + IPV4, "gso_type"),
        (vnet.encode(gso_type=1, gso_size=1448) + IPV4, "gso_type"),  # GSO without NEEDS_CSUM
        (vnet.encode(gso_type=0x80) + IPV4, "gso_type"),
        (vnet.encode(gso_size=1000) + IPV4, "gso_type"),
        (vnet.encode(flags=1, gso_type=1, gso_size=0, csum_start=20, csum_offset=16) + IPV4, "gso_size"),
        (vnet.encode(flags=1, gso_type=1, gso_size=1500, csum_start=20, csum_offset=16) + IPV4, "gso_size"),
        (vnet.encode(hdr_len=1501) + IPV4, "hdr_len"),
        (vnet.encode(flags=1, csum_start=10, csum_offset=6) + IPV4, "csum_start"),
        (vnet.encode(flags=1, csum_start=1484, csum_offset=16) + IPV4, "csum_start"),
        (vnet.encode(flags=1, csum_start=0xFFFF, csum_offset=16) + IPV4, "csum_start"),
        (vnet.encode(flags=1, csum_start=20, csum_offset=0xFFFF) + IPV4, "csum_offset"),
        (vnet.encode(flags=1, gso_type=1, gso_size=1448, csum_start=20, csum_offset=16) + UDP4, "gso_type"),
        (vnet.encode(flags=1, gso_type=1, gso_size=1448, csum_start=20, csum_offset=6) + IPV4, "csum_offset"),
    ],
    ids=[
        "no-packet",
        "not-ip",
        "unknown-flag",
        "udp-gso",
        "tcpv6-on-v4",
        "gso-no-csum",
        "ecn-alone",
        "size-without-gso",
        "gso-size-0",
        "gso-size-whole",
        "hdr-len-past",
        "csum-in-ip-header",
        "csum-past-end",
        "csum-max",
        "csum-offset-not-tcp-or-udp",
        "gso-not-tcp",
        "gso-csum-not-tcp",
    ],
)
def test_invalid_headers_name_their_field(record: bytes, reason: str) -> None:
    """Each invalid header is refused with the field that is wrong as its reason key."""
    why = vnet.problem(record)
    assert why is not None and why.split(":", 1)[0] == reason, why


@given(st.binary(min_size=0, max_size=80))
def test_any_bytes_get_a_verdict_never_an_exception(record: bytes) -> None:
    """Garbage from the peer gets None or a reason, never an exception (the daemon's loop must not die)."""
    why = vnet.problem(record)
    assert why is None or ":" in why
