"""Topology files: what a rack is made of, as frozen records.

The loader is imported on first use, not with the package: it reads the
link-type and target-backend registries, which import the records
(:mod:`fabqual.topology.model`), so importing a record never starts a cycle
through the loader, whichever module is imported first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabqual.topology.model import Link, Node, Topology

if TYPE_CHECKING:
    from fabqual.topology.load import load_topology, parse_topology

__all__ = ["Link", "Node", "Topology", "load_topology", "parse_topology"]


def __getattr__(name: str) -> Any:
    if name in ("load_topology", "parse_topology"):
        from fabqual.topology import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
