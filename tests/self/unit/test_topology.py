"""Topology files: every shipped one loads; every malformed one fails with one clear line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabqual.errors import TopologyError
from fabqual.topology import load_topology, parse_topology
from fabqual.topology.model import FcNvmeParams, IpofcParams, normalize_wwn

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "topologies").glob("*.yaml"))

VALID: dict[str, Any] = {
    "name": "mini",
    "profile": "emulated",
    "nodes": [
        {
            "name": "tgt",
            "address": "192.0.2.10",
            "credentials": {"key_file": "~/.ssh/id_ed25519"},
            "roles": ["nvme_target", "ipofc_end"],
            "nvme_target": {"backend": "kernel"},
            "hbas": [{"name": "hba0", "wwpn": "21:00:00:24:ff:7f:aa:01"}],
            "scratch_devices": [{"name": "scratch0", "path": "/dev/nullb0"}],
        },
        {
            "name": "ini",
            "address": "192.0.2.11",
            "roles": ["nvme_host", "ipofc_end"],
            "hbas": [{"name": "hba0", "wwpn": "0x2100002233445566"}],
        },
    ],
    "links": [
        {
            "name": "fc0",
            "type": "fc_nvme",
            "target": {"node": "tgt", "device": "hba0"},
            "host": {"node": "ini", "device": "hba0"},
            "namespaces": ["scratch0"],
        },
        {
            "name": "ip0",
            "type": "ipofc",
            "target": {"node": "tgt", "device": "hba0"},
            "initiator": {"node": "ini", "device": "hba0"},
        },
    ],
}


def changed(path: str, value: Any) -> str:
    """VALID with the value at a dotted path (list indexes as numbers) replaced; DELETE removes it."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is DELETE:
        del target[key]
    else:
        target[key] = value
    return yaml.safe_dump(data, sort_keys=False)


DELETE = object()

# (file text, expected error line). Each is what a user would get from a real mistake.
MALFORMED = [
    ("name: [unclosed\n", "bad.yaml: not valid YAML at line 2, column 1"),
    ("- just\n- a list\n", "bad.yaml: expected a mapping with 'name', 'nodes' and 'links' at the top"),
    (
        changed("colour", "blue"),
        "bad.yaml: colour: unknown key (known keys: name, profile, emulated, lab, nodes, vcenters, esxi_hosts, links)",
    ),
    (changed("nodes", DELETE), "bad.yaml: nodes: required key is missing"),
    (changed("nodes.0.adress", "x"), "bad.yaml: nodes[0].adress: unknown key"),
    (changed("nodes.0.port", "twenty-two"), "bad.yaml: nodes[0].port: expected an integer, got 'twenty-two'"),
    (changed("nodes.0.port", 70000), "bad.yaml: nodes[0].port: a TCP port is between 1 and 65535 (got 70000)"),
    (
        changed("nodes.0.hbas.0.wwpn", "21:00:00:24:ff:7f:aa"),
        "bad.yaml: nodes[0].hbas[0].wwpn: a WWN is 8 bytes of hex",
    ),
    (changed("nodes.0.hbas.0.wwpn", "0x21000024ff7f"), "bad.yaml: nodes[0].hbas[0].wwpn: a WWN is 8 bytes of hex"),
    (changed("nodes.1.name", "tgt"), "bad.yaml: nodes: name 'tgt' is used 2 times; names must be unique"),
    (
        changed("nodes.0.roles", ["nvme_target", "storage_god"]),
        "bad.yaml: nodes[0].roles[1]: not one of nvme_target, nvme_host",
    ),
    (
        changed("nodes.0.credentials", {"password": "hunter2"}),
        "bad.yaml: nodes[0].credentials.password: unknown key (known keys: agent, key_file, password_env)",
    ),
    (
        changed("nodes.0.credentials", {"key_file": "k", "agent": True}),
        "bad.yaml: nodes.tgt.credentials: give exactly one of key_file, agent: true, password_env"
        " (got key_file, agent)",
    ),
    (
        changed("nodes.1", {**VALID["nodes"][1], "credentials": {"password_env": "PW"}, "host_key_check": False}),
        "bad.yaml: nodes.ini.host_key_check: false cannot go with credentials.password_env: the password in $PW"
        " would go to a host whose key nobody checked; add its key to known_hosts (ssh-keyscan)",
    ),
    (
        changed(
            "vcenters",
            [{"name": "vc", "address": "vc.example", "password_env": "VC_PW", "tls_verify": False}],
        ),
        "bad.yaml: vcenters.vc.tls_verify: false would send the password in $VC_PW to a server nobody verified;"
        " keep tls_verify: true and pin the certificate with thumbprint: (SHA-1) or ca_file:",
    ),
    (changed("nodes.0.host_key_check", "no"), "bad.yaml: nodes[0].host_key_check: expected true or false, got 'no'"),
    (
        changed("nodes.0.scratch_devices.0.path", "nullb0"),
        "bad.yaml: nodes[0].scratch_devices[0].path: a scratch device is a path under /dev/ made of letters,",
    ),
    (
        changed("links.0.type", "fibre"),
        "bad.yaml: links[0].type: 'fibre' is not one of fc_nvme, nvmet_rdma, pvrdma, ipofc",
    ),
    (changed("links.0.host.node", "nowhere"), "bad.yaml: links.fc0.host.node: no node named 'nowhere' under 'nodes'"),
    (
        changed("links.0.host.device", "hba9"),
        "bad.yaml: links.fc0.host.device: node 'ini' has no HBA named 'hba9' (it has: hba0)",
    ),
    (
        changed("links.0.namespaces", ["nvme0n1"]),
        "bad.yaml: links.fc0.namespaces[0]: node 'tgt' has no scratch device named 'nvme0n1'",
    ),
    (
        changed("links.0.target", DELETE),
        "bad.yaml: links.fc0.target: required key is missing (fc_nvme links have target and host)",
    ),
    (changed("links.1.name", "fc0"), "bad.yaml: links: name 'fc0' is used 2 times"),
    (changed("links.1.mtus", [1500, 100]), "bad.yaml: links.ip0.mtus[1]: an MTU is between 576 and 65535 (got 100)"),
    (
        changed("nodes.1.roles", ["ipofc_end"]),
        "bad.yaml: links.fc0.host.node: node 'ini' is used as fc_nvme host but does not list role 'nvme_host'",
    ),
    (
        "name: x\nname: y\nnodes: []\nlinks: []\n",
        "bad.yaml: not valid YAML at line 2, column 1: key 'name' is given twice in one mapping",
    ),
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_topology_loads(path: Path) -> None:
    """The topologies we ship (the example rack first) are valid as shipped."""
    topology = load_topology(path)
    assert topology.links, f"{path.name} declares no links"


def test_example_rack_describes_the_seeds_lab() -> None:
    """The example rack has one link of each type, on the hardware of the lab notes."""
    topology = load_topology(REPO / "topologies" / "example-rack.yaml")
    assert sorted(link.type for link in topology.links) == [
        "fc_nvme",
        "fcp",
        "ipofc",
        "nvme_tcp",
        "nvmet_rdma",
        "pvrdma",
    ]
    assert topology.node("fc-target").hba("port0").model == "QLE2742"
    assert topology.node("roce-target").rnic("p0").model == "QL41262"
    fc = topology.links_of("fc_nvme")[0]
    assert isinstance(fc.params, FcNvmeParams) and fc.params.namespaces == ("ssd0", "ssd1")
    ipofc = topology.links_of("ipofc")[0]
    assert isinstance(ipofc.params, IpofcParams) and ipofc.params.mtus == (1500, 9000, 65000)


def test_password_env_with_checked_host_keys_and_verified_tls_loads() -> None:
    """The refusals above are about switching verification off, not about passwords as such."""
    data = copy.deepcopy(VALID)
    data["nodes"][1]["credentials"] = {"password_env": "PW"}
    data["vcenters"] = [
        {"name": "vc", "address": "vc.example", "password_env": "VC_PW", "thumbprint": ":".join(["AB"] * 20)}
    ]
    topology = parse_topology(yaml.safe_dump(data), "ok.yaml")
    assert topology.node("ini").host_key_check and topology.vcenter("vc").tls_verify


def test_valid_base_loads() -> None:
    """The base the malformed cases are made from is itself valid (so each case tests one mistake)."""
    topology = parse_topology(yaml.safe_dump(VALID), "ok.yaml")
    assert [n.name for n in topology.nodes] == ["tgt", "ini"]
    assert topology.node("ini").credentials.agent is True  # the default when none is given


@pytest.mark.parametrize("text,expected", MALFORMED, ids=[f"case{i:02d}" for i in range(len(MALFORMED))])
def test_malformed_topology_gives_one_clear_line(text: str, expected: str) -> None:
    """Each mistake is reported as one line naming the file, the key path and the value."""
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, "bad.yaml")
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message
    assert "Traceback" not in message


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    """A wrong path names the path and the option to fix it."""
    with pytest.raises(TopologyError, match="no such file; pass --topology"):
        load_topology(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_file_without_traceback(tmp_path: Path) -> None:
    """`fabqual doctor` on a broken file prints the one line and exits 2, no traceback."""
    bad = tmp_path / "rack.yaml"
    bad.write_text(changed("nodes.0.hbas.0.wwpn", "21:00"))
    proc = subprocess.run(
        [sys.executable, "-m", "fabqual.cli", "doctor", "--topology", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"fabqual: {bad}: nodes[0].hbas[0].wwpn: a WWN is 8 bytes of hex"
        " (0x2100f4e9d4543210 or 21:00:f4:e9:d4:54:32:10) or 'discover' (got '21:00')"
    ]


def test_wwns_normalize_to_the_sysfs_form() -> None:
    """Both spellings of a WWN compare equal to what /sys/class/fc_host prints."""
    assert normalize_wwn("21:00:00:24:FF:7F:AA:01") == "0x21000024ff7faa01"
    assert normalize_wwn("0x21000024ff7faa01") == "0x21000024ff7faa01"


def with_rdma_link(extra_paths: list[dict[str, Any]]) -> str:
    """VALID plus an RNIC on each node and an nvmet_rdma link with these extra paths."""
    data = copy.deepcopy(VALID)
    for node, address in zip(data["nodes"], ("10.9.0.1/24", "10.9.0.2/24"), strict=True):
        node["roles"].append("rdma_endpoint")
        node["rnics"] = [{"name": "p0", "address": address}, {"name": "p1", "address": address.replace(".9.", ".8.")}]
    data["links"].append(
        {
            "name": "roce0",
            "type": "nvmet_rdma",
            "target": {"node": "tgt", "device": "p0"},
            "host": {"node": "ini", "device": "p0"},
            "namespaces": ["scratch0"],
            "extra_paths": extra_paths,
        }
    )
    return yaml.safe_dump(data, sort_keys=False)


def test_multipath_extra_paths_load_with_defaults() -> None:
    text = with_rdma_link([{"trsvcid": 4421}, {"target": "p1", "host": "p1"}])
    link = parse_topology(text, "mp.yaml").links[-1]
    paths = link.params.extra_paths  # type: ignore[union-attr]
    assert [(p.target, p.host, p.trsvcid) for p in paths] == [(None, None, 4421), ("p1", "p1", 4421)]


@pytest.mark.parametrize(
    "extra_paths,expected",
    [
        (
            [{"target": "p7"}],
            "mp.yaml: links.roce0.extra_paths[0].target: node 'tgt' has no RNIC named 'p7' (it has: p0, p1)",
        ),
        (
            [{"trsvcid": 4420}],
            "mp.yaml: links.roce0.extra_paths[0]: RNIC 'p0' port 4420 is already the link's own path;"
            " give each path its own trsvcid or RNIC",
        ),
        (
            [{"host": "p1"}, {"host": "p0"}],
            "mp.yaml: links.roce0.extra_paths[1]: RNIC 'p0' port 4421 is already extra_paths[0];",
        ),
        ([{"trsvcid": 0}], "mp.yaml: links.roce0.extra_paths[0].trsvcid: a TCP port is between 1 and 65535 (got 0)"),
    ],
)
def test_bad_extra_path_gives_one_clear_line(extra_paths: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(TopologyError) as caught:
        parse_topology(with_rdma_link(extra_paths), "mp.yaml")
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("name: x\n".encode("utf-16"), "the file is UTF-16 text, not UTF-8; save it as UTF-8"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe", "a binary file: byte 0xff at offset 10 is not UTF-8"),
        ("name: r\u00e9seau\n".encode("latin-1"), "not UTF-8 text: byte 0xe9 at offset 7 is not UTF-8"),
        (b"name: a\x00b\n", "not valid YAML: unacceptable character #x0000"),
    ],
    ids=["utf16", "binary", "latin1", "nul"],
)
def test_file_that_is_not_utf8_text_is_one_clean_line(tmp_path: Path, raw: bytes, expected: str) -> None:
    """A UTF-16, Latin-1 or binary file (or one holding a NUL) gives one line through the CLI, no traceback."""
    bad = tmp_path / "rack.yaml"
    bad.write_bytes(raw)
    proc = subprocess.run(
        [sys.executable, "-m", "fabqual.cli", "doctor", "--topology", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"fabqual: {bad}: {expected}"), lines[0]


def test_directory_given_as_topology_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="is a directory, not a file; pass --topology"):
        load_topology(tmp_path)
