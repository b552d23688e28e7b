"""Executors: run commands and move files on a node.

:func:`executor_for_node` picks the implementation from the topology: a node
whose ``address`` is ``local`` is the machine fabqual runs on (plain
subprocesses, no SSH); any other address is reached over SSH.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabqual.executors.base import CommandResult, Executor, log_step
from fabqual.executors.local import LocalExecutor
from fabqual.executors.ssh import SshExecutor

if TYPE_CHECKING:
    from fabqual.topology.model import Node, Topology

__all__ = [
    "LOCAL_ADDRESS",
    "CommandResult",
    "Executor",
    "LocalExecutor",
    "NodeExecutors",
    "SshExecutor",
    "executor_for_node",
    "log_step",
]

LOCAL_ADDRESS = "local"
"""A node ``address`` meaning "this machine": commands run as local subprocesses."""


def executor_for_node(node: Node) -> Executor:
    """The executor for a topology node: local for ``address: local``, else SSH."""
    if node.address == LOCAL_ADDRESS:
        return LocalExecutor(node.name)
    return SshExecutor.for_node(node)


class NodeExecutors:
    """One executor per node of a topology, opened on first use; ``with`` closes them all.

    ``executors(name)`` is what :func:`fabqual.doctor.run_doctor` and the other
    per-node walks take as their ``executor_for``.
    """

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._open: dict[str, Executor] = {}

    def __call__(self, name: str) -> Executor:
        if name not in self._open:
            self._open[name] = executor_for_node(self._topology.node(name))
        return self._open[name]

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def __enter__(self) -> NodeExecutors:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
