"""TUN device for the tunnel ends: L3 packets in and out, no packet-info header.

With ``offload`` the device carries a virtio-net header before each packet
(``IFF_VNET_HDR``) and accepts checksum and TCP segmentation offload
(``TUNSETOFFLOAD``): the stack hands over TCP super-packets of up to 64 KiB
whatever the MTU, and the far end's kernel takes them back whole. The tunnel
relays header and packet as one opaque record, so at MTU 1500 one SCSI command
carries ~40 wire-sized segments' worth in a single record instead of 40 records
the daemons handle one by one. Both ends must agree (the link driver sets both).

Stdlib only (runs in the lab guests). :meth:`Tun.open` attaches to an existing
persistent device (``ip tuntap add dev NAME mode tun``, as the link driver makes
it, already addressed) or creates a transient one that vanishes when the last fd
closes. With offload, the virtio-net header of every packet from the peer is checked
(``vnet.py``) before ``write()``: an invalid one is dropped and counted by reason in
``invalid_vnet``. MTU, address and link state go through ``ip`` so IPv4 and IPv6 behave the
same; all of it applies to the network namespace the process runs in.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess

from fabqual.errors import DriverError
from fabqual.ipofc import vnet

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
VNET_HDR_SIZE = vnet.SIZE  # struct virtio_net_hdr, the TUN default (TUNSETVNETHDRSZ)
IFNAMSIZ = 16
MAX_IP_PACKET = 65536  # the largest IP packet (or GSO super-packet); any MTU the device may get fits
READ_SIZE = MAX_IP_PACKET + VNET_HDR_SIZE


def ip(*args: str) -> None:
    """Run one ``ip`` command; a failure is a DriverError with its own words."""
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DriverError(f"ip {' '.join(args)}: {err}") from None
    if done.returncode:
        raise DriverError(f"ip {' '.join(args)} failed: {done.stderr.strip() or done.returncode}")


def interface_exists(name: str) -> bool:
    """Whether ``name`` exists in this process's network namespace."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class Tun:
    """One TUN queue: non-blocking whole-packet reads and writes."""

    def __init__(self, name: str, fd: int, *, created: bool, offload: bool = False) -> None:
        self.name = name
        self.fd = fd
        self.created = created  # False: a persistent device someone else owns and removes
        self.offload = offload  # packets carry a virtio-net header; TCP comes as super-packets
        self.dropped_writes = 0
        self.invalid_vnet: dict[str, int] = {}  # reason -> packets dropped before the kernel saw them

    @classmethod
    def open(cls, name: str, *, mtu: int | None = None, address: str | None = None, offload: bool = False) -> Tun:
        """Attach to (or create) TUN ``name``; set ``mtu`` and ``address`` (CIDR) when given, and bring it up."""
        if not 1 <= len(name.encode()) < IFNAMSIZ:
            raise DriverError(f"TUN name {name!r} must be 1..{IFNAMSIZ - 1} bytes")
        existed = interface_exists(name)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as err:
            raise DriverError(f"cannot open /dev/net/tun: {err.strerror}; load the tun module (modprobe tun)") from None
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
        except OSError as err:
            os.close(fd)
            raise DriverError(
                f"TUNSETIFF {name}: {err.strerror}; if {name} exists it must be a TUN (not TAP) device without"
                " packet info, not attached by another process"
            ) from None
        if offload:
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            except OSError as err:
                os.close(fd)
                raise DriverError(f"TUNSETOFFLOAD {name}: {err.strerror}; run the tunnel without offload") from None
        tun = cls(name, fd, created=not existed, offload=offload)
        try:
            if mtu is not None:
                tun.set_mtu(mtu)
            if address is not None:
                ip("addr", "replace", address, "dev", name)
            ip("link", "set", "dev", name, "up")
        except DriverError:
            tun.close()
            raise
        return tun

    def set_mtu(self, mtu: int) -> None:
        if not 68 <= mtu <= MAX_IP_PACKET:
            raise DriverError(f"TUN {self.name}: MTU {mtu} outside 68..{MAX_IP_PACKET}")
        ip("link", "set", "dev", self.name, "mtu", str(mtu))

    def read_packets(self, limit: int = 256) -> list[bytes]:
        """Packets waiting now (at most ``limit``), without blocking."""
        out: list[bytes] = []
        while len(out) < limit:
            try:
                packet = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as err:
                raise DriverError(f"reading TUN {self.name}: {err.strerror}") from None
            if packet:
                out.append(packet)
        return out

    def write(self, packet: bytes) -> bool:
        """Hand one packet to the stack; False (counted) when its virtio-net header is invalid or the kernel
        refuses it (malformed, no buffer)."""
        if self.offload:
            why = vnet.problem(packet)
            if why is not None:
                reason = why.split(":", 1)[0]
                self.invalid_vnet[reason] = self.invalid_vnet.get(reason, 0) + 1
                return False
        try:
            os.write(self.fd, packet)
        except OSError:
            self.dropped_writes += 1
            return False
        return True

    def close(self) -> None:
        """Detach; a device this process created goes away with its fd."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
