"""An NVMe target backend from outside fabqual, as another package would register it (used by test_linkspec)."""

from __future__ import annotations

from typing import Any

from fabqual.errors import DriverError
from fabqual.requirement import Requirement, tool
from fabqual.targetspec import TargetBackend, register_backend
from fabqual.topology.model import Node


def export_demo(*args: Any) -> tuple[Any, ...]:
    raise DriverError("demo_target exports nothing: it only proves a plugin backend can be named")


def demo_needs(node: Node, trtype: str) -> list[Requirement]:
    return [tool("demo_tgt")]


DEMO = register_backend(TargetBackend("demo_target", export_demo, demo_needs))
