"""The state of one qualification run: topology, node executors, thresholds, doctor.

One object per pytest session, kept in ``config.stash``; fixtures read it. It is
created at configure time (cheap: only the topology file is read) and reaches
nodes only when a test first needs them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabqual.doctor import DoctorReport, run_doctor
from fabqual.executors.base import Executor
from fabqual.topology import Topology, load_topology

if TYPE_CHECKING:
    from fabqual.thresholds import Thresholds

log = logging.getLogger("fabqual")


@dataclass
class QualificationRun:
    """Everything a session shares; executors are created on first use and closed at the end."""

    topology_path: Path
    strict: bool
    profile_override: str | None
    emulated_lab: Any = None  # fabqual.lab.EmulatedLab when no topology was given
    keep_lab: bool = False
    _topology: Topology | None = None
    _executors: dict[str, Executor] = field(default_factory=dict)
    _thresholds: Thresholds | None = None
    _doctor: DoctorReport | None = None
    _lab_was_running: bool = False

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = load_topology(self.topology_path)
        return self._topology

    @property
    def profile(self) -> str:
        return self.profile_override or self.topology.profile

    def start_lab(self) -> None:
        """Boot the emulated lab if this run uses it (idempotent)."""
        if self.emulated_lab is None:
            return
        self._lab_was_running = self.emulated_lab.is_running()
        self.topology_path = Path(self.emulated_lab.ensure_up())
        self._topology = None

    def stop_lab(self) -> None:
        if self.emulated_lab is None or self.keep_lab or self._lab_was_running:
            return
        self.close()
        self.emulated_lab.down()

    def executor(self, node_name: str) -> Executor:
        if node_name not in self._executors:
            from fabqual.executors import executor_for_node

            self._executors[node_name] = executor_for_node(self.topology.node(node_name))
        return self._executors[node_name]

    @property
    def thresholds(self) -> Thresholds:
        if self._thresholds is None:
            from fabqual.thresholds import load_thresholds

            self._thresholds = load_thresholds(self.profile)
        return self._thresholds

    def doctor(self) -> DoctorReport:
        if self._doctor is None:
            self._doctor = run_doctor(self.topology, self.executor)
            for problem in self._doctor.problems:
                log.warning("doctor: %s", problem.line())
        return self._doctor

    def close(self) -> None:
        for executor in self._executors.values():
            executor.close()
        self._executors.clear()
