"""TUN offload on this machine's kernel: TCP crosses a relay of two TUN devices in super-packets.

Two TUN devices are opened by this process (as the tunnel daemons open theirs),
moved into two network namespaces, addressed at MTU 1500, and joined by a relay
thread that copies each record read from one to the other unchanged — what the
IPoFC framing does across SCSI. iperf3 then runs between the namespaces. With
``offload`` the relay must see records far larger than the MTU (TCP segmentation
left to the far kernel) and every one of them must be accepted by the other
device; without it no record exceeds the MTU. Needs root, ``ip`` and iperf3.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from fabqual.ipofc import vnet
from fabqual.ipofc.tun import VNET_HDR_SIZE, Tun

MTU = 1500
NAMESPACES = ("fq-tun-off-a", "fq-tun-off-b")
ADDRESSES = ("10.79.0.1", "10.79.0.2")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iperf3") or not os.path.exists("/dev/net/tun"),
    reason="needs root, iperf3 and /dev/net/tun",
)


def sh(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"
    return done.stdout


@dataclass
class Relay:
    """Copies records between two TUN devices and remembers the largest it carried."""

    tuns: tuple[Tun, Tun]
    largest: int = 0
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        fds = {tun.fd: (tun, other) for tun, other in (self.tuns, self.tuns[::-1])}
        while not self.stop.is_set():
            ready, _, _ = select.select(list(fds), [], [], 0.2)
            for fd in ready:
                source, sink = fds[fd]
                for record in source.read_packets():
                    self.largest = max(self.largest, len(record))
                    self.refused += not sink.write(record)


@pytest.fixture(params=[True, False], ids=["offload", "plain"])
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    offload: bool = request.param
    tuns: list[Tun] = []
    try:
        for index, ns in enumerate(NAMESPACES):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            sh("ip", "netns", "add", ns)
            tun = Tun.open(f"fqtoff{index}", offload=offload)
            tuns.append(tun)
            sh("ip", "link", "set", "dev", tun.name, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{ADDRESSES[index]}/30", "dev", tun.name)
            sh("ip", "-n", ns, "link", "set", "dev", tun.name, "mtu", str(MTU), "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        relay = Relay((tuns[0], tuns[1]))
        thread = threading.Thread(target=relay.run, name="tun-relay", daemon=True)
        thread.start()
        yield relay
        relay.stop.set()
        thread.join(5)
    finally:
        for tun in tuns:
            tun.close()
        for ns in NAMESPACES:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_tcp_crosses_in_super_packets_only_with_offload(relay: Relay) -> None:
    server = subprocess.Popen(
        ["ip", "netns", "exec", NAMESPACES[0], "iperf3", "-s", "-1", "-B", ADDRESSES[0]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listening = "for i in $(seq 50); do ss -Hltn 'sport = :5201' | grep -q . && exit 0; sleep 0.1; done; exit 1"
        sh("ip", "netns", "exec", NAMESPACES[0], "sh", "-c", listening)
        client = ["ip", "netns", "exec", NAMESPACES[1], "iperf3", "-J", "-t", "2", "-c", ADDRESSES[0]]
        report = json.loads(subprocess.run(client, capture_output=True, text=True, timeout=60, check=False).stdout)
        assert "end" in report, f"iperf3 across the relay failed: {report.get('error')}"
        received = report["end"]["sum_received"]["bits_per_second"]
    finally:
        server.kill()
        server.wait(10)
    assert received > 1_000_000, f"only {received} bit/s crossed the relay"
    assert relay.refused == 0, f"the far device refused {relay.refused} records"
    if relay.tuns[0].offload:
        assert relay.largest > 4 * MTU, f"largest record {relay.largest} bytes: no TCP super-packets with offload"
    else:
        assert relay.largest <= MTU, f"record of {relay.largest} bytes over MTU {MTU} without offload"
    assert VNET_HDR_SIZE == 10


def test_the_kernels_own_headers_pass_the_check(relay: Relay) -> None:
    """Every record the host kernel's TUN hands out (TCP super-packets and plain ones) passes vnet.problem():
    the check rejects only what a real kernel never writes."""
    test_tcp_crosses_in_super_packets_only_with_offload(relay)
    for tun in relay.tuns:
        assert tun.invalid_vnet == {}, f"{tun.name} dropped kernel-made records: {tun.invalid_vnet}"


def test_an_invalid_header_is_dropped_before_the_kernel_and_counted() -> None:
    """With offload, a record whose virtio-net header names UDP GSO is never written: counted under gso_type."""
    tun = Tun.open("fqtoffbad", offload=True)
    try:
        ipv4 = bytes([0x45]) + bytes(39)
        assert not tun.write(vnet.encode(flags=1, gso_type=3, gso_size=100, csum_start=20, csum_offset=6) + ipv4)
        assert tun.invalid_vnet == {"gso_type": 1} and tun.dropped_writes == 0
    finally:
        tun.close()
