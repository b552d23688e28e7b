"""``carrier: fcoe`` — software FCoE (VN2VN, no switch) between two nodes, LIO's ``tcm_fc`` on the target.

The target's controller is enabled first; the initiator's is created disabled
(only its WWPN is needed) until the LUN and its ACL exist; ``tcm_fc`` is never
loaded on the initiator (the ORDER rule in docs/emulated-lab.md, :func:`export_over_fcoe`).
"""

from __future__ import annotations

from fabqual.drivers.journal import Journal
from fabqual.drivers.lio_export import Backing, ExportedLun, export_over_fcoe
from fabqual.errors import LabError
from fabqual.executors.base import Executor
from fabqual.links.base import LinkContext
from fabqual.links.carriers.base import CarrierEnds, end_hba, register_carrier
from fabqual.requirement import Requirement, module
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.model import Node


@register_carrier("fcoe")
class FcoeCarrier:
    name = "fcoe"
    fabric_module = "tcm_fc"

    @staticmethod
    def needs(node: Node, device: str | None, role: str) -> list[Requirement]:
        fabric = [module(FcoeCarrier.fabric_module)] if role == "target" else []  # never loaded on the initiator
        return [*fabric, module("fcoe")]

    def __init__(self, context: LinkContext, journal: Journal) -> None:
        self.context = context
        self.journal = journal

    def _netdev(self, role: str) -> tuple[Executor, str]:
        node, hba = end_hba(self.context, role)
        netdev = getattr(hba, "netdev", None)
        if not netdev or netdev == DISCOVER:
            raise LabError(
                f"{node.name}: HBA {hba.name} of link {self.context.link.name} has no netdev;"
                " FCoE needs the Ethernet interface"
            )
        return self.context.executor(node.name), netdev

    def ends(self) -> CarrierEnds:
        self.target, self.target_netdev = self._netdev("target")
        self.initiator, self.initiator_netdev = self._netdev("initiator")
        return CarrierEnds(self.target, self.initiator, self.target, self.initiator)

    def export(self, backing: Backing, *, vendor: str, model: str) -> ExportedLun:
        return export_over_fcoe(
            self.target,
            self.initiator,
            self.journal,
            backing,
            target_netdev=self.target_netdev,
            initiator_netdev=self.initiator_netdev,
            vendor=vendor,
            model=model,
        )
