"""nvme-cli JSON parsing across the 1.x and 2.x shapes, on captured outputs.

2.x outputs were captured on the emulated lab (nvme-cli 2.3, the nvmet_rdma
link up); 1.x outputs come from public projects that quoted real 1.x output
(no nvme-cli 1.x binary runs on Debian 12) — each ``.origin`` file says which.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.drivers.nvme_host import parse_discovery, parse_list_subsys, parse_nvme_list
from fabqual.errors import ParseError

OUTPUTS = Path(__file__).parents[2] / "fixtures" / "outputs" / "nvme-cli"
LAB_NQN = "nqn.2024-01.io.fabqual:nvmet-rdma"


def text(name: str) -> str:
    return (OUTPUTS / name).read_text()


def test_v2_list_flat() -> None:
    (device,) = parse_nvme_list(text("v2.3_list_rdma.json"))
    assert (device.path, device.nsid, device.model, device.size_bytes) == ("/dev/nvme0n1", 1, "Linux", 536870912)


def test_v2_list_verbose_nested_tree() -> None:
    """`nvme list -v`: host → subsystem → namespaces; the namespace name becomes the device path."""
    (device,) = parse_nvme_list(text("v2.3_list_verbose_rdma.json"))
    assert (device.path, device.nsid, device.size_bytes) == ("/dev/nvme0n1", 1, 536870912)


def test_v2_list_subsys_list_of_hosts() -> None:
    (subsystem,) = parse_list_subsys(text("v2.3_list_subsys_rdma.json"))
    assert (subsystem.name, subsystem.nqn) == ("nvme-subsys0", LAB_NQN)
    (path,) = subsystem.paths
    assert (path.name, path.transport, path.address, path.state) == (
        "nvme0",
        "rdma",
        "traddr=192.168.77.1,trsvcid=4420",
        "live",
    )


def test_v2_discovery_log() -> None:
    records = parse_discovery(text("v2.3_discover_rdma.json"))
    ours = [r for r in records if r.subnqn == LAB_NQN]
    assert len(ours) == 1
    assert (ours[0].trtype, ours[0].traddr, ours[0].trsvcid) == ("rdma", "192.168.77.1", "4420")


def test_v1_list_without_namespace_ids() -> None:
    devices = parse_nvme_list(text("v1_list_loop.json"))
    assert [(d.path, d.nsid, d.model) for d in devices] == [
        ("/dev/nvme0n1", None, "INTEL SSDPEDMD400G4"),
        ("/dev/nvme1n1", None, "Linux"),
    ]


def test_v1_list_with_namespace_ids() -> None:
    devices = parse_nvme_list(text("v1_list_namespaces.json"))
    assert [(d.path, d.nsid, d.size_bytes) for d in devices] == [
        ("/dev/nvme0n1", 9217, 5368709120),
        ("/dev/nvme0n2", 9222, 5368709120),
    ]


def test_v1_list_subsys_paths_in_the_next_element() -> None:
    """nvme-cli <= 1.8 put each subsystem's paths in the next list element; multipath keeps both paths."""
    subsystems = parse_list_subsys(text("v1_list_subsys_split.json"))
    assert [(s.name, s.nqn, [p.name for p in s.paths]) for s in subsystems] == [
        ("nvme-subsys0", "nqn.2016-06.io.spdk:cnode1", ["nvme0"]),
        ("nvme-subsys1", "nqn.2016-06.io.spdk:cnode2", ["nvme1", "nvme2"]),
    ]


def test_warning_before_json_is_skipped() -> None:
    noisy = "Failed to open ns nvme0n2, errno 2\n" + text("v2.3_list_rdma.json")
    assert parse_nvme_list(noisy)[0].path == "/dev/nvme0n1"


@pytest.mark.parametrize(
    ("parser", "output", "message"),
    [
        (parse_nvme_list, "", "no JSON in the output"),
        (parse_nvme_list, '{"Devices": [', "invalid JSON"),
        (parse_nvme_list, '{"devices": []}', "no 'Devices' list"),
        (parse_list_subsys, '{"Subsystems": [{"Weird": 1}]}', "unexpected element"),
        (parse_discovery, "{}", "no 'records' list"),
    ],
)
def test_unparsable_output_is_an_error(parser, output: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parser(output)
