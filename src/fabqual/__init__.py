"""fabqual: acceptance and qualification of storage and RDMA fabrics under pytest."""

from __future__ import annotations

import importlib
from typing import Any

from fabqual.errors import (
    CommandError,
    CommandTimeoutError,
    FabqualError,
    LabError,
    NodeUnreachableError,
    ParseError,
    TopologyError,
)

# Imported on first use, so that stdlib-only subpackages (fabqual.ipofc runs in
# lab guests that have no PyYAML or paramiko) import cleanly.
_LAZY = {
    "CommandResult": "fabqual.executors.base",
    "Executor": "fabqual.executors.base",
    "Topology": "fabqual.topology",
    "load_topology": "fabqual.topology",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fabqual' has no attribute {name!r}")


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
