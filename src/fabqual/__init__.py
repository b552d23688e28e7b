"""fabqual: acceptance and qualification of storage and RDMA fabrics under pytest."""

from fabqual.errors import (
    CommandError,
    CommandTimeoutError,
    FabqualError,
    LabError,
    NodeUnreachableError,
    ParseError,
    TopologyError,
)
from fabqual.executors.base import CommandResult, Executor
from fabqual.topology import Topology, load_topology

__all__ = [
    "CommandError",
    "CommandResult",
    "CommandTimeoutError",
    "Executor",
    "FabqualError",
    "LabError",
    "NodeUnreachableError",
    "ParseError",
    "Topology",
    "TopologyError",
    "load_topology",
]
__version__ = "0.1.0"
