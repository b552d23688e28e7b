"""``carrier: fc`` — real QLogic HBAs: ``tcm_qla2xxx`` on the target's port in target mode.

Both HBA ports are found Online in ``/sys/class/fc_host`` before anything
changes; the target node's qla2xxx must be in target mode (``qlini_mode`` not
``enabled``); the LUN and its ACL exist before the TPG is enabled; then the
initiator issues a LIP, waits for the target's rport and scans its SCSI host
(:func:`export_over_fc`).
"""

from __future__ import annotations

from fabqual.drivers.fc_host import FcHostPort, resolve_port
from fabqual.drivers.journal import Journal
from fabqual.drivers.lio_export import Backing, ExportedLun, export_over_fc
from fabqual.errors import LabError
from fabqual.executors.base import Executor
from fabqual.links.base import LinkContext
from fabqual.links.carriers.base import CarrierEnds, end_hba, register_carrier
from fabqual.requirement import Requirement, module
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.model import Node


@register_carrier("fc")
class FcCarrier:
    name = "fc"
    fabric_module = "tcm_qla2xxx"

    @staticmethod
    def needs(node: Node, device: str | None, role: str) -> list[Requirement]:
        if role != "target":
            return []
        # the WWPN picks the port whose own qlini_mode counts, when declared
        wwpn = node.hba(device).wwpn if device else DISCOVER
        return [module(FcCarrier.fabric_module), Requirement("target_mode", "qla2xxx", wwpn)]

    def __init__(self, context: LinkContext, journal: Journal) -> None:
        self.context = context
        self.journal = journal

    def _port(self, role: str) -> tuple[Executor, FcHostPort]:
        """The node of a link end and its real HBA's Online fc_host port (nothing is changed)."""
        node, hba = end_hba(self.context, role)
        if hba.emulation != "none":
            raise LabError(
                f"{node.name}: HBA {hba.name} of link {self.context.link.name} is emulated ({hba.emulation});"
                " carrier fc needs a real HBA, use carrier: fcoe or tcm_loop"
            )
        executor = self.context.executor(node.name)
        return executor, resolve_port(executor, hba)

    def ends(self) -> CarrierEnds:
        self.target, self.target_port = self._port("target")
        self.initiator, self.initiator_port = self._port("initiator")
        return CarrierEnds(self.target, self.initiator, self.target, self.initiator)

    def export(self, backing: Backing, *, vendor: str, model: str) -> ExportedLun:
        return export_over_fc(
            self.target,
            self.initiator,
            self.journal,
            backing,
            target_port=self.target_port,
            initiator_port=self.initiator_port,
            vendor=vendor,
            model=model,
        )
