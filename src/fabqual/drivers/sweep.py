"""Replay and remove what earlier, killed runs left on a node.

A run that was killed (SIGKILL, a reboot of the controller, a lost CI runner)
leaves its run directory (:mod:`fabqual.drivers.rundir`) on every node it
touched, with the undo journal it had written so far. The sweep finds those
directories, leaves alone every run still alive (its pid, with the same start
time, on this controller; a run of another controller host unless ``force``),
replays the rest's open undo steps newest first, stops their marked daemons
and removes the directory. One line per node says what it did.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from fabqual.drivers.rundir import RUNS, RunOwner, stop_all_command
from fabqual.executors.base import Executor, log_step

_RUN = "@@fabqual-run "
_JOURNAL = "@@fabqual-journal"


def listing(root: str = RUNS) -> str:
    """Shell: every run directory under ``root`` with its owner and journal, for :func:`parse_listing`."""
    return (
        f'for d in {shlex.quote(root)}/*/; do [ -d "$d" ] || continue; printf \'\\n{_RUN}%s\\n\' "${{d%/}}";'
        f' cat "$d/owner.json" 2>/dev/null; printf \'\\n{_JOURNAL}\\n\'; cat "$d/journal" 2>/dev/null; done; true'
    )


LISTING = listing()


@dataclass
class LeftRun:
    """One run directory found on a node."""

    path: str
    owner: RunOwner | None
    steps: list[dict[str, Any]] = field(default_factory=list)  # open undo steps, oldest first

    @property
    def name(self) -> str:
        return self.owner.describe() if self.owner else f"unowned run directory {self.path}"


def parse_listing(text: str) -> list[LeftRun]:
    """The run directories in :data:`LISTING`'s output, each with the undo steps not yet closed."""
    runs: list[LeftRun] = []
    for chunk in text.split(f"\n{_RUN}")[1:]:
        head, _, journal = chunk.partition(f"\n{_JOURNAL}\n")
        path, _, owner_text = head.partition("\n")
        entries = []
        for line in journal.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by the kill: the step it names was not journaled whole
            if isinstance(entry, dict):
                entries.append(entry)
        closed = {e["closed"] for e in entries if "closed" in e}
        void = {(e.get("j"), e["void"]) for e in entries if "void" in e}  # journaled ahead, then refused
        steps = [
            e for e in entries if "what" in e and e.get("j") not in closed and (e.get("j"), e.get("n")) not in void
        ]
        runs.append(LeftRun(path.strip(), RunOwner.from_json(owner_text.strip()), steps))
    return runs


@dataclass
class SweepResult:
    node: str
    swept: list[str] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    not_replayable: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # the node could not be swept (unreachable): its links will error on their own

    def line(self, *, dry_run: bool = False) -> str:
        """One line: what was (or, for a dry run, would be) removed on the node."""
        if self.error:
            return f"{self.node}: cannot sweep: {self.error}"
        if not self.swept and not self.left_alone:
            return f"{self.node}: nothing left by earlier runs"
        parts = []
        if self.swept:
            verb = "would undo" if dry_run else "undid"
            parts.append(f"swept {len(self.swept)} killed run(s) ({', '.join(self.swept)}): {verb} {len(self.undone)}")
            shown = "; ".join(self.undone[:8]) + (f"; and {len(self.undone) - 8} more" if len(self.undone) > 8 else "")
            parts[-1] += f" step(s) [{shown}]" if self.undone else " steps"
            if self.already_gone:
                parts.append(f"{len(self.already_gone)} already gone")
            if self.not_replayable:
                parts.append(f"not replayable here: {'; '.join(self.not_replayable)}")
        if self.left_alone:
            parts.append(f"left alone: {'; '.join(self.left_alone)}")
        return f"{self.node}: " + ", ".join(parts)


def sweep_node(
    executor: Executor,
    *,
    own_run: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    root: str = RUNS,
) -> SweepResult:
    """Undo and remove every run directory on the node (under ``root``) whose run is no longer alive."""
    start = time.monotonic()
    result = SweepResult(executor.node)
    runs = parse_listing(executor.run(listing(root), timeout=60).stdout)
    for run in runs:
        owner = run.owner
        if owner is not None and owner.run_id == own_run:
            continue
        alive = owner.alive() if owner is not None else False
        if alive or (alive is None and not force):
            why = "still running" if alive else "its controller is another host; `fabqual clean --force` sweeps it"
            result.left_alone.append(f"{run.name}: {why}")
            continue
        result.swept.append(owner.run_id if owner else run.path)
        for step in reversed(run.steps):
            what, undo = str(step.get("what")), step.get("undo")
            if not isinstance(undo, str) or not undo:
                result.not_replayable.append(what)
            elif dry_run:
                result.undone.append(what)
            else:
                log_step(executor.node, f"sweep {owner.run_id if owner else run.path}: remove {what}")
                done = executor.run(undo, timeout=120, check=False)
                (result.undone if done.ok else result.already_gone).append(what)
        if not dry_run:
            run_id = owner.run_id if owner else ""
            stop = stop_all_command(run.path, run_id) + "; " if run_id else ""
            executor.run(f"{stop}rm -rf {shlex.quote(run.path)}", timeout=120)
    result.seconds = time.monotonic() - start
    return result
