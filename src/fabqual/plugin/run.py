"""The state of one qualification run: topology, node executors, thresholds, doctor.

One object per pytest session, kept in ``config.stash``; fixtures read it. It is
created at configure time (cheap: only the topology file is read) and reaches
nodes only when a test first needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabqual import redaction
from fabqual.doctor import DoctorReport, run_doctor
from fabqual.drivers import rundir
from fabqual.drivers.rundir import RunDirs
from fabqual.drivers.sweep import SweepResult, sweep_node
from fabqual.errors import CommandTimeoutError, FabqualError, NodeUnreachableError
from fabqual.executors.base import Executor
from fabqual.topology import Topology, load_topology

if TYPE_CHECKING:
    from fabqual.thresholds import Thresholds

log = logging.getLogger("fabqual")

UNREACHABLE_AFTER_S = 30.0  # a node that cannot run `true` in this long is lost (TCG guests are slow)


@dataclass
class QualificationRun:
    """Everything a session shares; executors are created on first use and closed at the end."""

    topology_file: Path | None  # None: the emulated lab's generated topology
    strict: bool
    profile_override: str | None
    keep_lab: bool = False
    progress: Callable[[str], None] | None = None  # the lab's image build and boot, shown as they happen
    emulated_lab: Any = None  # fabqual.lab.EmulatedLab, created when first needed
    _topology: Topology | None = None
    _executors: dict[str, Executor] = field(default_factory=dict)
    _thresholds: Thresholds | None = None
    _doctor: DoctorReport | None = None
    _lab_was_running: bool = False
    lost: dict[str, str] = field(default_factory=dict)  # node -> when and how it stopped answering
    answered: set[str] = field(default_factory=set)  # nodes that answered a probe in this session
    _run_dirs: RunDirs | None = None

    @property
    def uses_emulated_lab(self) -> bool:
        return self.topology_file is None

    @property
    def topology_path(self) -> Path:
        """The topology file; for the emulated lab it is written (ports chosen) without booting."""
        if self.topology_file is not None:
            return self.topology_file
        return Path(self.lab().prepare())

    def lab(self) -> Any:
        """The emulated lab this run uses (created on first use)."""
        if self.emulated_lab is None:
            from fabqual.lab import EmulatedLab

            self.emulated_lab = EmulatedLab(progress=self.progress)
        return self.emulated_lab

    @property
    def loaded_topology(self) -> Topology | None:
        """The topology once it has been read, without reading it."""
        return self._topology

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = load_topology(self.topology_path)
            redaction.register(*redaction.of_topology(self._topology))
        return self._topology

    @property
    def profile(self) -> str:
        return self.profile_override or self.topology.profile

    def start_lab(self) -> None:
        """Boot the emulated lab if this run uses it (idempotent)."""
        if not self.uses_emulated_lab:
            return
        lab = self.lab()
        running = lab.is_running()
        orphan = lab.orphaned() if running else None
        if orphan is not None:
            # Booted by a session that was killed before its teardown: fabqual's own, so this session
            # takes it over (and stops it at its end) if it answers, or replaces it.
            healthy = lab.healthy()
            log.warning(
                "the emulated lab left running by %s is %s",
                orphan.describe(),
                "reused" if healthy else "broken: replaced",
            )
            if not healthy:
                lab.down()
                running = False
        self._lab_was_running = running and orphan is None
        lab.ensure_up()
        if not self._lab_was_running:
            lab.claim(self.run_dirs.owner)
        self._topology = None  # re-read: the running lab's ports

    def stop_lab(self) -> None:
        self.finish()
        if not self.uses_emulated_lab or self.keep_lab or self._lab_was_running:
            return
        self.close()
        self.emulated_lab.down()

    @property
    def run_dirs(self) -> RunDirs:
        """This run's private directory on each node (journal, pidfiles, uploads); journals default to it."""
        if self._run_dirs is None:
            self._run_dirs = RunDirs(self.executor)
            rundir.activate(self._run_dirs)
        return self._run_dirs

    def sweep(self, nodes: list[str]) -> list[SweepResult]:
        """Undo what killed earlier runs left on ``nodes`` (runs still alive are left alone)."""
        own = self.run_dirs.owner.run_id
        results = []
        for node in nodes:
            try:
                result = sweep_node(self.executor(node), own_run=own)
            except FabqualError as error:  # unreachable: the links needing it error on their own
                result = SweepResult(node, error=str(error).splitlines()[0])
            log.warning("sweep: %s", result.line())
            results.append(result)
        return results

    def finish(self) -> None:
        """Remove this run's directories on the nodes (those a failed teardown needs are kept for the sweep)."""
        if self._run_dirs is not None:
            self._run_dirs.finish()
            rundir.activate(None)
            self._run_dirs = None

    def executor(self, node_name: str) -> Executor:
        if node_name not in self._executors:
            from fabqual.executors import executor_for_node

            self._executors[node_name] = executor_for_node(self.topology.node(node_name))
        return self._executors[node_name]

    def unreachable(self, node_name: str) -> str | None:
        """Why ``node_name`` does not answer a trivial command now, or None when it does."""
        try:
            self.executor(node_name).run("true", timeout=UNREACHABLE_AFTER_S)
        except (NodeUnreachableError, CommandTimeoutError) as error:
            return str(error)
        self.answered.add(node_name)
        return None

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
