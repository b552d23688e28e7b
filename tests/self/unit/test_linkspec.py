"""The link-type and target-backend registries: every reader sees the same entries, and plugins come in
through entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest
import yaml

import fabqual.entry_points
from fabqual import linkspec, requirement, targetspec
from fabqual.entry_points import Discovery
from fabqual.errors import FabqualError, TopologyError
from fabqual.linkspec import link_spec, link_types
from fabqual.thresholds import METRICS
from fabqual.topology import parse_topology
from fabqual.topology.model import check_link_type, check_node_role, check_target_backend

PLUGIN_GROUP = linkspec.ENTRY_POINT_GROUP
BACKEND_GROUP = targetspec.ENTRY_POINT_GROUP


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test discovers from scratch; what it registers is gone afterwards."""
    monkeypatch.setattr(linkspec, "_SPECS", dict(linkspec._SPECS))
    monkeypatch.setattr(linkspec, "_DRIVERS", dict(linkspec._DRIVERS))
    monkeypatch.setattr(linkspec, "_discover", Discovery(PLUGIN_GROUP, "link type", linkspec.BUILTIN_MODULES))
    monkeypatch.setattr(targetspec, "_BACKENDS", dict(targetspec._BACKENDS))
    monkeypatch.setattr(targetspec, "_discover", Discovery(BACKEND_GROUP, "target backend", targetspec.BUILTIN_MODULES))
    yield


def points(*values: tuple[str, str], group: str = PLUGIN_GROUP) -> list[EntryPoint]:
    return [EntryPoint(name=name, value=value, group=group) for name, value in values]


def test_every_built_in_spec_is_complete_and_consistent() -> None:
    """Each built-in type has roles, a short id, capabilities and metrics the thresholds know."""
    assert {"fc_nvme", "nvmet_rdma", "pvrdma", "ipofc"} <= set(link_types())
    shorts = [link_spec(name).short for name in link_types()]
    assert len(shorts) == len(set(shorts)), shorts  # test ids stay unambiguous
    for name in link_types():
        spec = link_spec(name)
        assert spec.roles and spec.capabilities and spec.metrics, name
        assert set(spec.metrics) <= set(METRICS), name
        assert check_link_type(name) is None
        assert all(check_node_role(role) is None for role in spec.roles.values())


def test_unknown_link_type_names_the_known_ones() -> None:
    """Asking for a type nobody registered is one line listing the registered ones."""
    with pytest.raises(FabqualError, match=r"unknown link type 'nvme_carrier_pigeon'; known: fc_nvme, "):
        link_spec("nvme_carrier_pigeon")


def test_a_broken_plugin_is_one_line_naming_it(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed link-type plugin whose module does not import stops discovery with one line
    naming the entry point, its module and the error: never a swallowed import error."""
    broken = points(("pigeon", "fabqual_no_such_plugin_module"))
    monkeypatch.setattr(fabqual.entry_points, "entry_points", lambda group: broken if group == PLUGIN_GROUP else [])
    with pytest.raises(FabqualError) as caught:
        link_types()
    message = str(caught.value)
    assert "\n" not in message
    assert "link type plugin 'pigeon'" in message and "fabqual_no_such_plugin_module" in message
    assert "ModuleNotFoundError" in message


def test_a_plugin_module_adds_a_link_type(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point naming a module that registers a spec adds that type for every reader."""
    plugin = points(("demo", "tests.self.unit.linkspec_plugin"))
    monkeypatch.setattr(fabqual.entry_points, "entry_points", lambda group: plugin if group == PLUGIN_GROUP else [])
    assert "demo_link" in link_types()
    assert link_spec("demo_link").short == "demo"
    assert check_link_type("demo_link") is None and check_node_role("demo_end") is None


def test_target_backends_are_registered_by_name() -> None:
    """kernel and SPDK are found by name; an unknown backend names the known ones."""
    assert targetspec.target_backend("kernel").name == "kernel"
    assert targetspec.target_backend("spdk").name == "spdk"
    with pytest.raises(FabqualError, match="unknown NVMe target backend 'ramdisk'; known: kernel, spdk"):
        targetspec.target_backend("ramdisk")


def rack_with_backend(backend: str) -> str:
    """A one-link rack whose target node runs ``backend``."""
    return yaml.safe_dump(
        {
            "name": "backend-rack",
            "nodes": [
                {
                    "name": "tgt",
                    "address": "192.0.2.10",
                    "roles": ["nvme_target"],
                    "nvme_target": {"backend": backend},
                    "nics": [{"name": "eth1", "netdev": "eth1", "address": "10.0.0.1/24"}],
                    "scratch_devices": [{"name": "scratch0", "path": "/dev/nullb0"}],
                },
                {
                    "name": "ini",
                    "address": "192.0.2.11",
                    "roles": ["nvme_host"],
                    "nics": [{"name": "eth1", "netdev": "eth1", "address": "10.0.0.2/24"}],
                },
            ],
            "links": [
                {
                    "name": "tcp0",
                    "type": "nvme_tcp",
                    "target": {"node": "tgt", "device": "eth1"},
                    "host": {"node": "ini", "device": "eth1"},
                    "namespaces": ["scratch0"],
                }
            ],
        }
    )


def test_a_topology_naming_an_unregistered_backend_lists_the_registered_ones() -> None:
    """nvme_target.backend is checked against the registry when the file loads: one line, known names."""
    with pytest.raises(TopologyError) as caught:
        parse_topology(rack_with_backend("ramdisk"), "rack.yaml")
    message = str(caught.value)
    assert message.startswith("rack.yaml: nodes[0].nvme_target.backend: ") and "\n" not in message, message
    assert "'ramdisk'" in message and "not one of kernel, spdk" in message, message


def test_a_plugin_module_adds_a_target_backend(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend registered through the entry-point group can be named in a topology; the doctor asks it."""
    plugin = points(("demo", "tests.self.unit.targetspec_plugin"), group=BACKEND_GROUP)
    monkeypatch.setattr(fabqual.entry_points, "entry_points", lambda group: plugin if group == BACKEND_GROUP else [])
    assert targetspec.target_backends() == ("demo_target", "kernel", "spdk")
    assert check_target_backend("demo_target") is None
    topology = parse_topology(rack_with_backend("demo_target"), "rack.yaml")
    node = topology.node("tgt")
    assert node.nvme_target is not None and node.nvme_target.backend == "demo_target"
    needs = requirement.nvme_export_needs(node, ("scratch0",), "tcp")
    assert ("tool", "demo_tgt") in {(need.kind, need.name) for need in needs}


def test_a_broken_backend_plugin_is_one_line_naming_it(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend plugin that does not import stops the topology's loading with one line naming it."""
    broken = points(("ramdisk", "fabqual_no_such_backend_module"), group=BACKEND_GROUP)
    monkeypatch.setattr(fabqual.entry_points, "entry_points", lambda group: broken if group == BACKEND_GROUP else [])
    with pytest.raises(FabqualError) as caught:
        parse_topology(rack_with_backend("kernel"), "rack.yaml")
    message = str(caught.value)
    assert "\n" not in message and "target backend plugin 'ramdisk'" in message, message
    assert "fabqual_no_such_backend_module" in message and "ModuleNotFoundError" in message, message
