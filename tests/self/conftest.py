"""Fixtures shared by the self-tests: one emulated lab per session; the three tiers.

The self-tests live in three directories, one per tier, and each test is
marked with its tier here, so ``-m "not lab"`` needs no list of files:

- ``unit/``: no VM and no service: parsers, codecs, records, rules, the CLI on bad input,
  quick runs of a local tool (fio on a file, iperf3 on loopback); under a minute in all;
- ``integration/`` (marker ``integration``): real programs started on this machine
  (sshd, vcsim, PostgreSQL, a labgrid coordinator, Chromium, inner pytest sessions);
- ``lab/`` (marker ``lab``): boots the emulated lab's QEMU guests. A test anywhere
  that asks for the lab is marked ``lab`` too.

Every self-test that needs real guests asks for ``lab``; the first one boots it
(building the image when the cache has none) and the session stops it at the
end, unless it was already running before (then it is someone else's and is
left alone). Tests that break the lab on purpose ask for ``own_lab`` and run
last, so they never pull the lab from under the other tests. The tiers run in
that order: unit first, so a broken parser fails in seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabqual.drivers import rundir
from fabqual.errors import FabqualError
from fabqual.executors.ssh import SshExecutor
from fabqual.lab import EmulatedLab
from fabqual.topology import Topology, load_topology


@dataclass(frozen=True)
class SessionLab:
    lab: EmulatedLab
    booted_here: bool  # False: it ran before this session (someone else's): never kill it


@pytest.fixture(autouse=True, scope="module")
def module_run_dirs() -> Iterator[None]:
    """Each test module starts with run directories of its own: the process-wide default keeps an
    executor per node *name*, and a fake node of one module must not stand in for a lab guest of
    the same name in the next (nor a guest rebooted since, whose directory is gone)."""
    rundir.activate(None)
    yield
    # As a session's end does: remove the module's directories whose journals were all undone, so
    # a later module (the sweep's tests) finds no leftovers of a still-running process on the guests.
    with contextlib.suppress(FabqualError):
        rundir.current().finish()
    rundir.activate(None)


@pytest.fixture(scope="session")
def session_lab() -> Iterator[SessionLab]:
    lab = EmulatedLab(progress=print)
    lab.ensure_up(wait=True)  # another session may be booting it: share that lab
    yield SessionLab(lab, lab.booted)
    if lab.booted:
        lab.down()


@pytest.fixture(scope="session")
def lab(session_lab: SessionLab) -> EmulatedLab:
    return session_lab.lab


@pytest.fixture()
def own_lab(session_lab: SessionLab) -> EmulatedLab:
    """The lab, for tests that break it; only when this session booted it."""
    if not session_lab.booted_here:
        pytest.skip("the lab was running before this session (someone else's); not stopping or killing it")
    return session_lab.lab


@pytest.fixture(scope="session")
def topology(lab: EmulatedLab) -> Topology:
    return load_topology(lab.topology_path)


@pytest.fixture()
def ssh(topology: Topology) -> Iterator[dict[str, SshExecutor]]:
    executors = {node.name: SshExecutor.for_node(node) for node in topology.nodes}
    yield executors
    for executor in executors.values():
        executor.close()


HERE = Path(__file__).parent
TIERS = ("unit", "integration", "lab")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: starts real programs on this machine (tests/self/integration/)")
    config.addinivalue_line("markers", "lab: boots the QEMU guests of the emulated lab (tests/self/lab/)")


def tier(item: pytest.Item) -> str:
    """The item's tier: its directory's, or ``lab`` wherever it asks for the lab."""
    if "session_lab" in getattr(item, "fixturenames", ()):
        return "lab"
    try:
        top = item.path.relative_to(HERE).parts[0]
    except ValueError:  # not a self-test (e.g. an inner pytest session's own tests)
        return "unit"
    return top if top in TIERS else "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier; run unit, then integration, then lab modules, and the tests that
    kill or stop the lab after every other test (stable order otherwise, modules kept whole)."""
    module_tier: dict[Path, int] = {}
    for item in items:
        name = tier(item)
        if name != "unit":
            item.add_marker(name)
        module_tier[item.path] = max(module_tier.get(item.path, 0), TIERS.index(name))
    breaking = [item for item in items if "own_lab" in getattr(item, "fixturenames", ())]
    rest = sorted((item for item in items if item not in breaking), key=lambda item: module_tier[item.path])
    items[:] = rest + breaking
