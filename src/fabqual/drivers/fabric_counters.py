"""Where a link's fabric counters live on its nodes, and reading them there (one round trip per node).

A :class:`CounterSource` is one counter set of one port: an RDMA port's
``hw_counters`` and ``counters``, an FC port's ``fc_host`` ``statistics``.
Which sets a port has is probed on the node (:func:`rdma_sources`,
:func:`fc_sources`); a port without any is a reason (:class:`NoCounters`),
never zeros. Parsing and the error rule: :mod:`fabqual.tools.fabric_counters`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from fabqual.errors import LabError
from fabqual.executors.base import Executor
from fabqual.tools.fabric_counters import CounterSet, parse_counter_dump

RDMA_COUNTER_DIRS = ("hw_counters", "counters")
FC_HOST = "/sys/class/fc_host"


@dataclass(frozen=True)
class CounterSource:
    """One counter directory of one port on one node."""

    executor: Executor = field(repr=False)
    port: str  # "ini rxe0/1 hw_counters"
    directory: str


@dataclass(frozen=True)
class NoCounters:
    """A port the row crossed that keeps no counters fabqual can read, and why."""

    port: str
    reason: str


def _existing(executor: Executor, directories: list[str]) -> set[str]:
    probe = " ".join(f"[ -d {shlex.quote(d)} ] && echo {shlex.quote(d)};" for d in directories)
    return set(executor.run(f"{probe} true", timeout=30).stdout.split())


def rdma_sources(executor: Executor, device: str, port: int) -> list[CounterSource] | NoCounters:
    """The counter sets of RDMA port ``device``/``port`` on the executor's node."""
    base = f"/sys/class/infiniband/{device}/ports/{port}"
    wanted = [f"{base}/{name}" for name in RDMA_COUNTER_DIRS]
    found = _existing(executor, wanted)
    label = f"{executor.node} {device}/{port}"
    if not found:
        return NoCounters(label, f"{executor.node}: {base} has neither hw_counters nor counters")
    return [CounterSource(executor, f"{label} {d.rsplit('/', 1)[1]}", d) for d in wanted if d in found]


def fc_sources(executor: Executor, wwpn: str) -> list[CounterSource] | NoCounters:
    """The ``fc_host`` statistics of the FC port with ``wwpn`` (0x... as sysfs prints it) on the node."""
    listing = executor.run(f"grep -H . {FC_HOST}/*/port_name 2>/dev/null; true", timeout=30).stdout
    wanted = wwpn.lower().removeprefix("0x")
    for line in listing.splitlines():
        path, _, name = line.partition(":")
        if name.strip().lower().removeprefix("0x") == wanted:
            host = path.split("/")[-2]
            directory = f"{FC_HOST}/{host}/statistics"
            label = f"{executor.node} {host} ({wwpn})"
            if not _existing(executor, [directory]):
                return NoCounters(label, f"{executor.node}: {directory} is missing")
            return [CounterSource(executor, f"{label} statistics", directory)]
    return NoCounters(
        f"{executor.node} {wwpn}",
        f"{executor.node}: no {FC_HOST} port has WWPN {wwpn} (an emulated port such as nvme-fcloop"
        " registers no FC transport class, so it keeps no link statistics)",
    )


def read_counters(sources: list[CounterSource]) -> list[CounterSet]:
    """Every source's counters now, one command per node."""
    by_node: dict[str, list[CounterSource]] = {}
    for source in sources:
        by_node.setdefault(source.executor.node, []).append(source)
    sets: list[CounterSet] = []
    for node_sources in by_node.values():
        executor = node_sources[0].executor
        marks = " ".join(
            f"echo @{i}; grep -H . {shlex.quote(s.directory)}/* 2>/dev/null;" for i, s in enumerate(node_sources)
        )
        out = executor.run(f"{marks} true", timeout=60).stdout
        chunks = out.split("@")[1:]
        if len(chunks) != len(node_sources):
            raise LabError(f"{executor.node}: reading {len(node_sources)} counter sets gave {len(chunks)} parts")
        for source, chunk in zip(node_sources, chunks, strict=True):
            body = chunk.split("\n", 1)[1] if "\n" in chunk else ""
            sets.append(CounterSet(source.port, parse_counter_dump(body, source.directory)))
    return sets
