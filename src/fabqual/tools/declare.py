"""What a tool module declares next to its parser: the metrics it measures and how the doctor probes it.

Every tool module (:mod:`.fio`, :mod:`.perftest`, :mod:`.iperf3`, :mod:`.ping`)
has one :class:`ToolSpec` named ``SPEC``. The thresholds loader takes metric
names, units and directions from the specs (:func:`metrics`), the doctor takes the
probe of a tool a link needs (:func:`probe_for`), and the report's inventory asks
each node for the version of every tool that has a version command. A link type
names the tools it uses and gets both from here. Data only: nothing here runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Comparison = Literal[">=", "<="]


@dataclass(frozen=True)
class Metric:
    """One number a tool's result yields, in the unit thresholds are written in."""

    name: str  # iops, bw_gbps, rtt_avg_ms ...: the key of thresholds entries
    unit: str
    better: Comparison  # ">=": more is better (min / fraction of line rate); "<=": less is better (max)
    what: str = ""


@dataclass(frozen=True)
class ToolProbe:
    """How the doctor tells one executable is usable on a node, and what to install if not."""

    executable: str  # the name a requirement asks for (fio, ib_write_bw, ...)
    package: str  # what to install (Debian's name; the message says so)
    version: str = ""  # a command printing its version; "" when presence is all that is checked
    minimum: tuple[int, ...] = ()  # the oldest version that works (read from `version`'s output)

    @property
    def command(self) -> str:
        """The doctor's probe: the version command, or ``command -v`` when there is none."""
        return self.version or f"command -v {self.executable}"


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name in reports, the executables it needs on a node, the metrics it measures."""

    name: str  # fio, perftest, iperf3, ping (the report's inventory names it so)
    probes: tuple[ToolProbe, ...]
    metrics: tuple[Metric, ...]
    version: str = ""  # a command whose first line the report's inventory shows; "" for none

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


def specs() -> tuple[ToolSpec, ...]:
    """The tools fabqual runs, each declared in its own module."""
    from fabqual.tools import fabric_counters, fio, iperf3, perftest, ping

    return (fio.SPEC, perftest.SPEC, iperf3.SPEC, ping.SPEC, fabric_counters.SPEC)


def metrics() -> dict[str, Metric]:
    """Every metric a test may check, by name (a name declared twice is a bug, caught by a self-test)."""
    return {m.name: m for spec in specs() for m in spec.metrics}


def probe_for(executable: str) -> ToolProbe | None:
    """The probe a tool module declares for ``executable``, or None when no tool module runs it."""
    return next((p for spec in specs() for p in spec.probes if p.executable == executable), None)
