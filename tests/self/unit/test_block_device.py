"""The ``block_device`` capability: what the fio matrix asks for, offered by every NVMe link and by fcp."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fabqual.executors.local import LocalExecutor
from fabqual.handles import BlockDevice, NvmeNamespace
from fabqual.links.base import LinkSession
from fabqual.linkspec import link_spec, link_types
from fabqual.topology import load_topology

REPO = Path(__file__).resolve().parents[3]


def test_every_link_with_a_namespace_offers_a_block_device() -> None:
    """No NVMe link loses its fio rows to the capability's new name; fcp offers block_device alone."""
    for name in link_types():
        spec = link_spec(name)
        if "nvme_namespace" in spec.capabilities:
            assert "block_device" in spec.capabilities, name
    assert link_spec("fcp").capabilities == ("block_device",)


def test_an_nvme_session_hands_out_its_namespace_as_the_block_device() -> None:
    """Read when asked: after a repaired fault renamed the namespace, the block device follows it."""
    (link,) = load_topology(REPO / "topologies" / "example-rack.yaml").links_of("nvme_tcp")
    namespace = NvmeNamespace(
        link=link,
        host=LocalExecutor("ini"),
        device="/dev/nvme1n1",
        transport="tcp",
        subsystem_nqn="nqn.x",
        scratch=True,
    )
    session = LinkSession(link, nvme_namespace=namespace)
    device = session.capability("block_device")
    assert isinstance(device, BlockDevice)
    assert (device.device, device.scratch, device.host.node) == ("/dev/nvme1n1", True, "ini")
    session.nvme_namespace = replace(namespace, device="/dev/nvme2n1")
    again = session.capability("block_device")
    assert isinstance(again, BlockDevice) and again.device == "/dev/nvme2n1"


def test_a_session_without_either_has_no_block_device() -> None:
    (link,) = load_topology(REPO / "topologies" / "example-rack.yaml").links_of("pvrdma")
    assert LinkSession(link).capability("block_device") is None
