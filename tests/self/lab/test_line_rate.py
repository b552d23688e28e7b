"""Line rates read on the lab's guests from the files a rack's ports have (net, infiniband, fcloop)."""

from __future__ import annotations

import time

from fabqual.drivers.port_rate import fcloop_rate, netdev_rate, rdma_rate
from fabqual.drivers.rdma import rdma_links
from fabqual.executors.ssh import SshExecutor
from fabqual.lab.vm import DATA_LINK_SPEED_MBPS
from fabqual.topology.model import Hba


def test_rates_read_on_the_lab_guests(ssh: dict[str, SshExecutor]) -> None:
    """The data NIC reports QEMU's declared speed, and an rxe device on it the matching port rate."""
    tgt = ssh["tgt"]
    eth1 = netdev_rate(tgt, "eth1")
    assert (
        eth1.gbps == DATA_LINK_SPEED_MBPS / 1000 and eth1.read == f"/sys/class/net/eth1/speed = {DATA_LINK_SPEED_MBPS}"
    )
    assert fcloop_rate(tgt, Hba(name="fc0", emulation="fcloop", netdev="eth1")) == eth1
    loopback = netdev_rate(tgt, "lo")  # the kernel answers EINVAL: no speed
    assert loopback.gbps is None and loopback.node == "tgt" and "lo" in loopback.port and "speed" in loopback.read
    missing = rdma_rate(tgt, "nosuchdev0", 1)
    assert missing.gbps is None and "nosuchdev0 port 1" in missing.port and "unreadable" in missing.read
    existing = [device for device, netdev in rdma_links(tgt).items() if netdev == "eth1"]  # a link may be up
    if existing:
        assert rdma_rate(tgt, existing[0], 1).gbps == DATA_LINK_SPEED_MBPS / 1000
        return
    tgt.run("modprobe rdma_rxe && rdma link add fqrate0 type rxe netdev eth1", timeout=60)
    try:
        rate = rdma_rate(tgt, "fqrate0", 1)
        for _ in range(20):  # a new rxe port takes its rate from the netdev once it is up
            if rate.gbps == DATA_LINK_SPEED_MBPS / 1000:
                break
            time.sleep(1)
            rate = rdma_rate(tgt, "fqrate0", 1)
        assert rate.gbps == DATA_LINK_SPEED_MBPS / 1000, rate
    finally:
        tgt.run("rdma link delete fqrate0", timeout=120)


def test_fcloop_without_a_netdev_says_what_to_declare(ssh: dict[str, SshExecutor]) -> None:
    rate = fcloop_rate(ssh["tgt"], Hba(name="fc0", emulation="fcloop"))
    assert rate.gbps is None and "give the HBA a netdev" in rate.read and rate.node == "tgt"
