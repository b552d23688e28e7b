"""Topology files: what a rack is made of, as frozen records."""

from fabqual.topology.load import load_topology, parse_topology
from fabqual.topology.model import Link, Node, Topology

__all__ = ["Link", "Node", "Topology", "load_topology", "parse_topology"]
