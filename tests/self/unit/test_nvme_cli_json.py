"""nvme-cli JSON (and 1.x discover text) parsing across the 1.x and 2.x shapes, on real outputs.

2.3 outputs were captured on the emulated lab (the nvmet_rdma link up); 1.12
(Debian 11) and 2.13 (Debian 13) ones on the lab with those releases' nvme-cli
against an nvmet-tcp subsystem; older 1.x outputs come from public projects that
quoted real 1.x output — each ``.origin`` file says which.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabqual.drivers.nvme_host import (
    discover_speaks_json,
    parse_discovery,
    parse_discovery_text,
    parse_list_subsys,
    parse_nvme_list,
)
from fabqual.errors import ParseError
from fabqual.executors.local import LocalExecutor

OUTPUTS = Path(__file__).parents[3] / "fixtures" / "outputs" / "nvme-cli"
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


# ---- nvme-cli 1.12 (Debian 11) and 2.13 (Debian 13), one nvmet-tcp subsystem ----

TCP_NQN = "nqn.2026-12.org.fabqual:parsers-capture"


@pytest.mark.parametrize(
    "name", ["v1.12_list_tcp.json", "v1.12_list_verbose_tcp.json", "v2.13_list_tcp.json", "v2.13_list_verbose_tcp.json"]
)
def test_list_flat_and_verbose_of_1_12_and_2_13(name: str) -> None:
    """The same namespace from `nvme list` and `nvme list -v` of both releases (1.12's -v has one entry
    per subsystem, 2.13's a host tree)."""
    assert (OUTPUTS / f"{name}.origin").is_file()
    (device,) = parse_nvme_list(text(name))
    assert (device.path, device.nsid, device.size_bytes) == ("/dev/nvme0n1", 1, 67108864)
    if "verbose" not in name:
        assert (device.model, device.serial) == ("Linux", "fabqualcap01")


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("v1.12_list_subsys_tcp.json", "traddr=127.0.0.1 trsvcid=4499 src_addr=127.0.0.1"),
        ("v2.13_list_subsys_tcp.json", "traddr=127.0.0.1,trsvcid=4499,src_addr=127.0.0.1"),
    ],
)
def test_list_subsys_of_1_12_and_2_13(name: str, address: str) -> None:
    (subsystem,) = parse_list_subsys(text(name))
    assert (subsystem.name, subsystem.nqn) == ("nvme-subsys0", TCP_NQN)
    (path,) = subsystem.paths
    assert (path.name, path.transport, path.address, path.state) == ("nvme0", "tcp", address, "live")


def test_discover_json_of_2_13_and_text_of_1_12_give_the_same_records() -> None:
    """1.12 cannot print the discovery log as JSON; its text log reads into the same records as 2.13's JSON
    (apart from the subtype wording of the discovery controller's own entry)."""
    from_json = parse_discovery(text("v2.13_discover_tcp.json"))
    from_text = parse_discovery_text(text("v1.12_discover_tcp.txt"))
    assert [(r.trtype, r.traddr, r.trsvcid, r.subnqn) for r in from_text] == [
        (r.trtype, r.traddr, r.trsvcid, r.subnqn) for r in from_json
    ]
    assert from_text[1].subnqn == TCP_NQN and from_text[1].subtype == "nvme subsystem"
    assert (from_text[0].subtype, from_json[0].subtype) == ("unrecognized", "current discovery subsystem")


@pytest.mark.parametrize(("name", "speaks"), [("v1.12_discover_help.txt", False), ("v2.13_discover_help.txt", True)])
def test_whether_discover_speaks_json_is_read_from_its_usage(name: str, speaks: bool) -> None:
    """NvmeHost.discover asks `nvme discover --help` first: 1.12 has no --output-format, 2.13 has."""
    assert (OUTPUTS / f"{name}.origin").is_file()
    assert discover_speaks_json(text(name)) is speaks


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t[: t.index("=====Discovery Log Entry 1")], "2 records announced, 1 found: truncated"),
        (lambda t: t.replace("subnqn:  nqn.2026-12.org.fabqual:parsers-capture\n", ""), "entry 1 has no subnqn"),
        (lambda t: "Failed to write to /dev/nvme-fabrics: Connection refused\n", "no 'Discovery Log Number"),
    ],
    ids=["truncated", "no-subnqn", "refused"],
)
def test_broken_discover_text_is_an_error(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parse_discovery_text(edit(text("v1.12_discover_tcp.txt")))


def test_something_else_than_discover_usage_is_an_error() -> None:
    with pytest.raises(ParseError, match="not nvme-cli's discover usage"):
        discover_speaks_json("sh: 1: nvme: not found\n")


@pytest.mark.skipif(shutil.which("nvme") is None, reason="nvme-cli is not installed on this machine")
def test_this_machines_nvme_cli_is_asked_the_same_way() -> None:
    """The probe NvmeHost.discover runs, on the real nvme-cli here (Debian 12: 2.3, which speaks JSON)."""
    usage = LocalExecutor().run("nvme discover --help 2>&1; true", timeout=30).stdout
    version = LocalExecutor().run("nvme version", timeout=30).stdout
    assert discover_speaks_json(usage) is not version.startswith("nvme version 1.")


# ---- the same, captured on the release's own guests (scripts/capture_nvme_cli.sh): Debian 11's nvme-cli
# 1.12 on its 5.10 kernel, Debian 13's 2.13 on 6.12 ----


@pytest.mark.parametrize("version", ["v1.12", "v2.13"])
def test_release_guest_outputs_parse(version: str) -> None:
    """list, list -v and list-subsys of the release's own nvme-cli on its own kernel give one tcp namespace."""
    for kind in ("list", "list_verbose", "list_subsys", "discover"):
        assert any((OUTPUTS / f"{version}_guest_{kind}_tcp.{ext}.origin").is_file() for ext in ("json", "txt"))
    for kind in ("list", "list_verbose"):
        (device,) = parse_nvme_list(text(f"{version}_guest_{kind}_tcp.json"))
        assert (device.path, device.nsid, device.size_bytes) == ("/dev/nvme0n1", 1, 67108864)
    (subsystem,) = parse_list_subsys(text(f"{version}_guest_list_subsys_tcp.json"))
    (path,) = subsystem.paths
    assert (subsystem.nqn, path.transport, path.state) == (TCP_NQN, "tcp", "live")
    assert "traddr=127.0.0.1" in path.address and "trsvcid=4499" in path.address


def test_discovery_log_of_5_10_lists_only_the_subsystem() -> None:
    """5.10's nvmet has no entry for the discovery subsystem itself (6.12 has, as 6.1 has): 1 record, not 2."""
    (record,) = parse_discovery_text(text("v1.12_guest_discover_tcp.txt"))
    assert (record.trtype, record.traddr, record.trsvcid, record.subnqn) == ("tcp", "127.0.0.1", "4499", TCP_NQN)
    records = parse_discovery(text("v2.13_guest_discover_tcp.json"))
    assert [r.subnqn for r in records][1:] == [TCP_NQN] and len(records) == 2
