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
    from fabqual.topology.model import Node

__all__ = [
    "LOCAL_ADDRESS",
    "CommandResult",
    "Executor",
    "LocalExecutor",
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
