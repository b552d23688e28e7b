"""The link-type registry: every reader sees the same specs, and plugins come in through entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

import fabqual.entry_points
from fabqual import linkspec
from fabqual.drivers import target
from fabqual.errors import FabqualError
from fabqual.linkspec import link_spec, link_types
from fabqual.thresholds import METRICS
from fabqual.topology.model import check_link_type, check_node_role

PLUGIN_GROUP = linkspec.ENTRY_POINT_GROUP


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test discovers from scratch; what it registers is gone afterwards."""
    monkeypatch.setattr(linkspec, "_SPECS", dict(linkspec._SPECS))
    monkeypatch.setattr(linkspec, "_DRIVERS", dict(linkspec._DRIVERS))
    monkeypatch.setattr(linkspec, "_discovered", False)
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
    assert target.target_backend("kernel").name == "kernel"
    assert target.target_backend("spdk").name == "spdk"
    with pytest.raises(FabqualError, match="unknown NVMe target backend 'ramdisk'; known: kernel, spdk"):
        target.target_backend("ramdisk")
