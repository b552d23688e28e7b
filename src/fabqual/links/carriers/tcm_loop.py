"""``carrier: tcm_loop`` — target and initiator on the target node, joined by LIO's ``tcm_loop``.

The two tunnel ends run in network namespaces of their own on that node, so
their traffic crosses the tunnel instead of the node's loopback.
"""

from __future__ import annotations

import shlex

from fabqual.drivers.journal import Journal
from fabqual.drivers.lio_export import Backing, ExportedLun, export_over_loop
from fabqual.executors.base import Executor, log_step
from fabqual.executors.netns import NetnsExecutor
from fabqual.links.base import LinkContext
from fabqual.links.carriers.base import CarrierEnds, register_carrier
from fabqual.requirement import Requirement, module
from fabqual.topology.model import Node

NETNS = {"target": "fq-ipfc-t", "initiator": "fq-ipfc-i"}


@register_carrier("tcm_loop")
class TcmLoopCarrier:
    name = "tcm_loop"
    fabric_module = "tcm_loop"

    @staticmethod
    def needs(node: Node, device: str | None, role: str) -> list[Requirement]:
        return [module(TcmLoopCarrier.fabric_module)] if role == "target" else []

    def __init__(self, context: LinkContext, journal: Journal) -> None:
        self.context = context
        self.journal = journal

    def _namespace(self, executor: Executor, role: str) -> NetnsExecutor:
        name = f"{NETNS[role]}-{self.context.link.name}"[:30]
        q = shlex.quote(name)
        log_step(executor.node, f"create network namespace {name}")
        executor.run(f"ip netns del {q} 2>/dev/null; ip netns add {q} && ip -n {q} link set lo up", timeout=30)
        self.journal.record_command(executor, f"network namespace {name}", f"ip netns del {q}")
        return NetnsExecutor(executor, name)

    def ends(self) -> CarrierEnds:
        self.node = self.context.executor(self.context.link.end("target").node)
        target_run, initiator_run = self._namespace(self.node, "target"), self._namespace(self.node, "initiator")
        return CarrierEnds(self.node, self.node, target_run, initiator_run)

    def export(self, backing: Backing, *, vendor: str, model: str) -> ExportedLun:
        return export_over_loop(self.node, self.journal, backing, vendor=vendor, model=model)
