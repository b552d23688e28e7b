"""IPoFC carriers, registered by name: how the tunnel's SCSI LUN gets from target to initiator.

A carrier is one module under ``fabqual/links/carriers/`` whose class is decorated
with :func:`register_carrier`; the ``ipofc`` link asks :func:`carrier_for` for the
one its params name and never branches on the name itself. A carrier first
resolves its two ends (:meth:`Carrier.ends`, nothing on the fabric changed yet),
then exports a backstore of the target node so that the initiator end sees it as
``/dev/sgN`` (:meth:`Carrier.export`). The LIO/FC steps themselves are drivers
(:mod:`fabqual.drivers.lio_export`), shared with the ``fcp`` link.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fabqual.drivers.journal import Journal
from fabqual.drivers.lio_export import Backing, ExportedLun
from fabqual.errors import DriverError
from fabqual.executors.base import Executor
from fabqual.links.base import LinkContext
from fabqual.requirement import Requirement
from fabqual.topology.model import Hba, Node

# The carriers fabqual ships: module names under fabqual.links.carriers, imported on first use.
BUILTIN = ("fc", "fcoe", "tcm_loop")


@dataclass(frozen=True)
class CarrierEnds:
    """The link's two nodes, and where each tunnel end runs (the node itself, or a netns on it)."""

    target: Executor
    initiator: Executor
    target_run: Executor
    initiator_run: Executor


class Carrier(Protocol):
    """One way across; made per bring-up with the link's context and journal."""

    name: str
    fabric_module: str  # the LIO fabric module that exports the LUN on the target node

    @staticmethod
    def needs(node: Node, device: str | None, role: str) -> list[Requirement]:
        """What an end's node needs for this carrier (its fabric module on the target, ...), for the doctor."""
        ...

    def ends(self) -> CarrierEnds: ...

    def export(self, backing: Backing, *, vendor: str, model: str) -> ExportedLun: ...


CarrierFactory = Callable[[LinkContext, Journal], Carrier]
_CARRIERS: dict[str, CarrierFactory] = {}
C = TypeVar("C", bound=type)


def register_carrier(name: str) -> Callable[[C], C]:
    """Class decorator: the carrier ``name`` (the ipofc params' ``carrier:``) is built by this class."""

    def decorate(cls: C) -> C:
        _CARRIERS[name] = cls
        return cls

    return decorate


def carrier_names() -> tuple[str, ...]:
    """Every registered carrier (the built-in modules imported first)."""
    for module in BUILTIN:
        importlib.import_module(f"fabqual.links.carriers.{module}")
    return tuple(_CARRIERS)


def carrier_needs(name: str, node: Node, device: str | None, role: str) -> list[Requirement]:
    """What carrier ``name`` needs of the node at one end (for the doctor); DriverError if it is not registered."""
    known = carrier_names()
    if name not in _CARRIERS:
        raise DriverError(f"IPoFC carrier {name!r} is not registered; use one of {', '.join(known)}")
    carrier: Any = _CARRIERS[name]  # a Carrier class: needs is a static method
    return list(carrier.needs(node, device, role))


def carrier_for(name: str, context: LinkContext, journal: Journal) -> Carrier:
    """The registered carrier ``name`` for this link; DriverError naming the known ones if there is none."""
    known = carrier_names()
    if name not in _CARRIERS:
        raise DriverError(
            f"link {context.link.name}: carrier {name!r} is not supported by this driver; use one of {', '.join(known)}"
        )
    return _CARRIERS[name](context, journal)


def end_hba(context: LinkContext, role: str) -> tuple[Node, Hba]:
    """The node of a link end and the HBA its ``device:`` names."""
    end = context.link.end(role)
    node = context.topology.node(end.node)
    if end.device is None:
        raise DriverError(f"link {context.link.name}: the {role} end names no HBA (device:)")
    return node, node.hba(end.device)
