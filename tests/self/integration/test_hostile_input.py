"""Hostile strings in any topology field never reach a shell unquoted nor leave their directory.

Hypothesis puts hostile text (``;``, ``$()``, backticks, newlines, spaces, ``../``,
non-ASCII) into one string field of a rack-like topology at a time. Through the
loader, the value is refused with one clean line or accepted; an accepted
topology then goes through the doctor and the ``fc_nvme`` and ``nvmet_rdma``
bring-up and teardown against recording executors (:mod:`fabqual.testing.fake_node`),
and every command they sent is read the way ``/bin/sh`` reads it
(:mod:`fabqual.testing.shell_words`). A second property skips the loader and puts
the hostile value straight into the loaded records, to show the builders quote
whatever they get (defence in depth). No lab: seconds per run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import shlex
import subprocess
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabqual.doctor import run_doctor
from fabqual.drivers import rdma_endpoint, rundir
from fabqual.errors import FabqualError, TopologyError
from fabqual.links.base import LinkContext, driver_for
from fabqual.testing import hostile_strings, load_profile
from fabqual.testing.fake_node import FakeNode
from fabqual.testing.shell_words import CANARY, Word, violations, words
from fabqual.testing.topology_fields import string_fields
from fabqual.topology import parse_topology
from fabqual.topology.grammar import check_cidr, check_name
from fabqual.topology.model import Topology, check_link_type, check_target_backend

load_profile()

RACK: dict[str, Any] = {
    "name": "hostile-rack",
    "profile": "emulated",
    "nodes": [
        {
            "name": "tgt",
            "address": "192.0.2.10",
            "user": "root",
            "credentials": {"key_file": "~/.ssh/id_ed25519"},
            "known_hosts": "~/.ssh/known_hosts",
            "console_log": "/var/log/conserver/tgt.log",
            "roles": ["nvme_target", "nvme_host", "rdma_endpoint", "ipofc_end", "fcp_target", "vm"],
            "nvme_target": {"backend": "kernel"},
            "hbas": [
                {"name": "fc0", "model": "QLE2742", "emulation": "fcloop", "driver": "qla2xxx"},
                {"name": "fc1", "model": "QLE2562", "wwpn": "21:00:00:24:ff:7f:aa:01", "firmware": "ql2500_fw.bin"},
                {"name": "fc2", "emulation": "fcoe", "netdev": "eth2", "wwnn": "0x2000525400000001"},
            ],
            "rnics": [
                {
                    "name": "r0",
                    "model": "QL41262",
                    "netdev": "eth1",
                    "rdma_device": "rxe0",
                    "emulation": "rxe",
                    "driver": "rdma_rxe",
                    "address": "192.168.77.1/24",
                },
                {
                    "name": "r1",
                    "netdev": "eth3",
                    "rdma_device": "rxe1",
                    "emulation": "rxe",
                    "address": "192.168.78.1/24",
                },
                {
                    "name": "p0",
                    "model": "PVRDMA",
                    "netdev": "ens224",
                    "rdma_device": "vmw_pvrdma0",
                    "driver": "vmw_pvrdma",
                    "address": "192.168.0.1/24",
                },
            ],
            "nics": [{"name": "e0", "model": "E810", "netdev": "eth4", "driver": "ice", "address": "192.168.79.1/24"}],
            "scratch_devices": [
                {"name": "nullb0", "path": "/dev/nullb0", "create": "null_blk"},
                {"name": "nullb1", "path": "/dev/nullb1", "create": "null_blk"},
            ],
            "vm": {"vcenter": "vc", "esxi_host": "esx1.lab.example", "vm_name": "VM 20"},
        },
        {
            "name": "ini",
            "address": "ini.lab.example",
            "credentials": {"password_env": "FABQUAL_INI_PASSWORD"},
            "roles": ["nvme_host", "rdma_endpoint", "ipofc_end", "fcp_initiator", "vm"],
            "hbas": [{"name": "fc0", "emulation": "fcoe", "netdev": "eth2"}],
            "rnics": [
                {
                    "name": "r0",
                    "netdev": "eth1",
                    "rdma_device": "rxe0",
                    "emulation": "rxe",
                    "address": "192.168.77.2/24",
                },
                {
                    "name": "r1",
                    "netdev": "eth3",
                    "rdma_device": "rxe1",
                    "emulation": "rxe",
                    "address": "192.168.78.2/24",
                },
                {
                    "name": "p0",
                    "model": "PVRDMA",
                    "netdev": "ens224",
                    "rdma_device": "vmw_pvrdma0",
                    "driver": "vmw_pvrdma",
                    "address": "192.168.0.2/24",
                },
            ],
            "nics": [{"name": "e0", "netdev": "eth4", "address": "192.168.79.2/24"}],
            "vm": {"vcenter": "vc", "esxi_host": "esx1.lab.example", "vm_name": "VM30"},
        },
        {
            "name": "spdk",
            "address": "2001:db8::20",
            "credentials": {"agent": True},
            "roles": ["nvme_target", "nvme_host"],
            "nvme_target": {"backend": "spdk", "rpc_socket": "/var/tmp/spdk.sock", "hugepages_gb": 2},
            "hbas": [
                {
                    "name": "fc0",
                    "driver": "qla2xxx",
                    "firmware": "ql2700_fw.bin",
                    "wwpn": "0x21000024ff7faa02",
                    "wwnn": "0x20000024ff7faa02",
                }
            ],
            "scratch_devices": [
                {"name": "ssd0", "path": "/dev/disk/by-id/nvme-eui.002538b391b0e1d5"},
                {"name": "ssd1", "wwid": "naa.5000c500a1b2c3d4"},
                {"name": "ssd2", "serial": "S4EWNX0N123456A"},
                {"name": "ssd3", "eui": "0025385b71b01234"},
            ],
        },
    ],
    "vcenters": [
        {
            "name": "vc",
            "address": "vcenter.lab.example",
            "user": "administrator@vsphere.local",
            "password_env": "FABQUAL_VCENTER_PASSWORD",
            "ca_file": "/etc/ssl/vc.pem",
            "thumbprint": ":".join(["9B"] * 20),
            "datacenter": "Lab",
        },
    ],
    "esxi_hosts": [
        {
            "name": "esx1.lab.example",
            "vcenter": "vc",
            "uplink": "vmnic4",
            "vmknic": "vmk1",
            "vmknic_address": "192.168.0.11/24",
            "ssh_address": "esx1.lab.example",
        },
    ],
    "links": [
        {
            "name": "fc0",
            "type": "fc_nvme",
            "target": {"node": "tgt", "device": "fc0"},
            "host": {"node": "tgt", "device": "fc0"},
            "namespaces": ["nullb0"],
            "subsystem_nqn": "nqn.2024-01.io.fabqual:fc-nvme",
        },
        {
            "name": "roce0",
            "type": "nvmet_rdma",
            "target": {"node": "tgt", "device": "r0"},
            "host": {"node": "ini", "device": "r0"},
            "namespaces": ["nullb0"],
            "subsystem_nqn": "nqn.2024-01.io.fabqual:nvmet-rdma",
            "extra_paths": [{"target": "r1", "host": "r1"}],
        },
        {
            "name": "tcp0",
            "type": "nvme_tcp",
            "target": {"node": "tgt", "device": "e0"},
            "host": {"node": "ini", "device": "e0"},
            "namespaces": ["nullb0"],
            "subsystem_nqn": "nqn.2024-01.io.fabqual:nvme-tcp",
            "extra_paths": [{"trsvcid": 4421}],
        },
        {
            "name": "fc1",
            "type": "fc_nvme",
            "target": {"node": "spdk", "device": "fc0"},
            "host": {"node": "spdk", "device": "fc0"},
            "namespaces": ["ssd0", "ssd1", "ssd2", "ssd3"],
        },
        {
            "name": "ipofc0",
            "type": "ipofc",
            "target": {"node": "tgt", "device": "fc2"},
            "initiator": {"node": "ini", "device": "fc0"},
            "carrier": "fcoe",
            "tunnel_prefix": "10.77.0.0/30",
        },
        {
            "name": "fcp0",
            "type": "fcp",
            "target": {"node": "tgt", "device": "fc2"},
            "initiator": {"node": "ini", "device": "fc0"},
            "carrier": "fcoe",
            "backstore": "nullb1",
        },
        {
            "name": "pvrdma0",
            "type": "pvrdma",
            "server": {"node": "tgt", "device": "p0"},
            "client": {"node": "ini", "device": "p0"},
            "vcenter": "vc",
            "switch": "fabqual dvs",
            "portgroup": "pg 1",
        },
    ],
}

BROUGHT_UP = ("fc0", "roce0", "tcp0")
REPO = Path(__file__).resolve().parents[3]
# A real scratch-safety probe of a fresh null_blk on the lab's tgt guest (see its .origin file).
CLEAN_PROBE = (REPO / "fixtures" / "outputs" / "blockdev" / "clean_nullb.txt").read_text()


def string_leaves(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and list indexes) of every string value in the parsed YAML."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from string_leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from string_leaves(value, (*path, index))
    elif isinstance(data, str):
        yield path


FIELDS = sorted(string_leaves(RACK), key=str)


def field_id(path: tuple[Any, ...]) -> str:
    return ".".join(str(step) for step in path)


def value_at(data: Any, path: tuple[Any, ...]) -> str:
    """The value at ``path`` (keys, attribute names, indexes) in parsed YAML or in loaded records."""
    for step in path:
        data = data[step] if isinstance(data, (dict, list, tuple)) else getattr(data, step)
    return str(data)


def with_value(path: tuple[Any, ...], value: str) -> str:
    data = copy.deepcopy(RACK)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@contextlib.contextmanager
def fake_rack_run() -> Iterator[None]:
    """Run directories of the fake rack alone: the process-wide default may already know a real lab
    node of the same name from an earlier self-test, and would send the fake rack's undo steps there."""
    rundir.activate(rundir.RunDirs())
    try:
        yield
    finally:
        rundir.activate(None)


def exercise(topology: Topology) -> dict[str, FakeNode]:
    """The doctor over every link, then bring-up and teardown of the fc_nvme, nvmet_rdma and nvme_tcp links.

    A refusal by fabqual itself (one of its errors) is a fine end: it stops before the node is
    harmed. Returns the nodes with every command they were sent.
    """
    fabric: set[str] = set()
    nodes = {node.name: FakeNode(node.name, exported=fabric, probe_output=CLEAN_PROBE) for node in topology.nodes}
    with fake_rack_run():
        run_doctor(topology, nodes.__getitem__)
        for link in topology.links:
            if link.name not in BROUGHT_UP:
                continue
            driver = driver_for(LinkContext(topology, link, nodes.__getitem__))
            try:
                with contextlib.suppress(FabqualError):
                    driver.up()
            finally:
                with contextlib.suppress(FabqualError):
                    driver.down()
    return nodes


def assert_no_violation(nodes: dict[str, FakeNode]) -> None:
    for node in nodes.values():
        for command in node.commands:
            assert violations(command) == [], f"{node.node}: {command!r}"
        for remote in node.files:
            assert ".." not in remote.split("/"), f"{node.node}: file {remote!r}"


def test_the_rack_comes_up_on_the_fake_nodes() -> None:
    """The baseline: with benign values every brought-up link runs to the end (the properties below
    would prove nothing if the builders stopped early), and nothing is flagged."""
    topology = parse_topology(yaml.safe_dump(RACK), "hostile.yaml")
    fabric: set[str] = set()
    nodes = {node.name: FakeNode(node.name, exported=fabric, probe_output=CLEAN_PROBE) for node in topology.nodes}
    with fake_rack_run():
        for name in BROUGHT_UP:
            link = next(x for x in topology.links if x.name == name)
            driver = driver_for(LinkContext(topology, link, nodes.__getitem__))
            session = driver.up()
            assert session.nvme_namespace.device == "/dev/nvme1n1"
            driver.down()
    assert any(c.startswith("nvme connect -t rdma") for c in nodes["ini"].commands)
    assert any(c.startswith("rmdir /sys/kernel/config/nvmet/subsystems/") for c in nodes["tgt"].commands)
    assert_no_violation(nodes)


@pytest.mark.parametrize("path", FIELDS, ids=field_id)
@settings(max_examples=max(6, settings().max_examples // 50), suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_field_is_refused_in_one_line_or_stays_harmless(path: tuple[Any, ...], data: st.DataObject) -> None:
    """Through the loader: refused naming the file (one line, no traceback), or accepted and then
    never unquoted in any command of the doctor and two link bring-ups, and no path with '..'."""
    value = data.draw(hostile_strings(like=value_at(RACK, path)), label="value")
    try:
        topology = parse_topology(with_value(path, value), "hostile.yaml")
    except TopologyError as error:
        assert str(error).startswith("hostile.yaml: ") and "\n" not in str(error), str(error)
        return
    assert_no_violation(exercise(topology))


def record_fields(record: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths (attribute names and tuple indexes) of the free-text fields of loaded records.

    Names and references (checked by ``check_name``, or against a registry: link types, target
    backends) are left out: replacing one breaks the cross-references the loader guarantees, which
    is a different failure than quoting. So are
    addresses with a prefix length: ``ip addr add`` gets them quoted, but as an address a ``/..``
    is no path, and the checker reads every absolute-looking word as one.
    """
    if isinstance(record, tuple):
        for index, item in enumerate(record):
            yield from record_fields(item, (*path, index))
        return
    if not dataclasses.is_dataclass(record):
        return
    hints = typing.get_type_hints(type(record))
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        check = f.metadata.get("check")
        if (
            isinstance(value, str)
            and hints[f.name] in (str, str | None)
            and check not in (check_name, check_cidr, check_link_type, check_target_backend)
        ):
            yield (*path, f.name)
        elif isinstance(value, tuple) or dataclasses.is_dataclass(value):
            yield from record_fields(value, (*path, f.name))


def replaced(record: Any, path: tuple[Any, ...], value: str) -> Any:
    step, rest = path[0], path[1:]
    if isinstance(record, tuple):
        items = list(record)
        items[step] = replaced(items[step], rest, value) if rest else value
        return tuple(items)
    new = replaced(getattr(record, step), rest, value) if rest else value
    return dataclasses.replace(record, **{step: new})


BASE = parse_topology(yaml.safe_dump(RACK), "hostile.yaml")
RECORD_FIELDS = sorted(record_fields(BASE), key=str)


@pytest.mark.parametrize("path", RECORD_FIELDS, ids=field_id)
@settings(max_examples=max(10, settings().max_examples // 30), suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_builders_quote_what_they_get_even_past_the_grammar(
    monkeypatch: pytest.MonkeyPatch, path: tuple[Any, ...], data: st.DataObject
) -> None:
    """Defence in depth: a hostile value put straight into the loaded records (as if a grammar had
    a hole) is quoted by every builder or refused by fabqual with one of its own errors."""
    value = data.draw(hostile_strings(like=value_at(BASE, path)), label="value")
    monkeypatch.setattr(rdma_endpoint, "PORT_UP_TIMEOUT", 0.0)  # a refused RDMA device is not waited for
    assert_no_violation(exercise(replaced(BASE, path, value)))


def test_every_string_field_of_the_rack_is_tried() -> None:
    """The rack above holds a value in every string field a record has (so the properties reach them)."""
    tried = {".".join(str(s) for s in p if not isinstance(s, int)) for p in FIELDS}
    assert len(FIELDS) > 60 and len(RECORD_FIELDS) > 30
    assert tried  # the YAML paths; the record-level names are compared below
    names = {f.split(".", 1)[1] for f in string_fields() if f != "Topology.source"}
    leaves = {str(p[-1]) for p in FIELDS if not isinstance(p[-1], int)} | {"namespaces", "roles"}
    assert names <= leaves, sorted(names - leaves)


# ---- the checker itself, against the real /bin/sh ----


@settings(max_examples=200)
@given(
    args=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
        min_size=1,
        max_size=4,
    )
)
def test_words_split_like_the_real_shell(args: list[str]) -> None:
    """shell_words.words() decodes a quoted command line exactly as /bin/sh does."""
    command = shlex.join(args)
    shell = subprocess.run(
        ["/bin/sh", "-c", f'for a in {command}; do printf "%s\\0" "$a"; done'],
        capture_output=True,
        check=True,
    )
    assert [w.text for w in words(command) if isinstance(w, Word)] == shell.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize(
    "command,flagged",
    [
        (f"mkdir /sys/kernel/config/nullb/a;{CANARY}", True),
        (f"mkdir '/sys/kernel/config/nullb/a;{CANARY}'", False),
        (f'echo "$({CANARY})" > x', True),
        (f"echo `{CANARY}`", True),
        (f"test -d /sys/module/a\n{CANARY}", True),
        (f"modprobe a {CANARY}", True),
        (shlex.join(["modprobe", f"a {CANARY}", f"$({CANARY})", f"'{CANARY}"]), False),
        ("cat '/sys/class/net/../../etc/shadow'", True),
        ("ls /sys/kernel/config/nvmet/ports", False),
    ],
)
def test_checker_flags_what_it_should(command: str, flagged: bool) -> None:
    assert bool(violations(command)) is flagged, violations(command)
