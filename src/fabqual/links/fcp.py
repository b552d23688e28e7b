"""The ``fcp`` link: a SCSI LUN exported by LIO over Fibre Channel (classic FCP), found as ``/dev/sdX``.

Composition, target end first (the ORDER rule, docs/emulated-lab.md):

1. the carrier (``carrier:``, the same modules as IPoFC's under
   :mod:`fabqual.links.carriers`: ``fc`` on real QLogic HBAs with ``tcm_qla2xxx``
   in target mode, ``fcoe`` for software FCoE between two nodes with ``tcm_fc``)
   resolves both ends before anything changes;
2. target node: the ``backstore:`` scratch device proven safe
   (:func:`~fabqual.drivers.scratch.ensure_scratch`), then an LIO ``iblock``
   backstore on it with a unit serial fixed per link, so its NAA WWN is known in
   advance (:func:`~fabqual.drivers.scsi_disk.lio_naa_wwid`);
3. the carrier exports it as LUN 0 with an ACL for the initiator port; the
   initiator finds the disk by that WWN (not by its ``sdX`` name), and lowers
   its ``max_sectors_kb`` / ``queue_depth`` where the params ask (journaled,
   restored; the lab asks because ``tcm_fc`` hangs with 1 MiB I/O at QD32).

The link offers ``block_device``: the fio matrix, writes verified. Teardown
deletes the disk on the initiator before the LUN, its target and its FCoE
controllers go. SPDK's FCP target is not driven here (no rack of the notes
exposes it through an interface fabqual could script yet).
"""

from __future__ import annotations

import uuid

from fabqual.drivers.fcoe import FcoeController
from fabqual.drivers.journal import Journal, modprobe, read
from fabqual.drivers.lio import Backstore, Lio
from fabqual.drivers.lio_export import ExportedLun
from fabqual.drivers.port_rate import fc_rate
from fabqual.drivers.scratch import ensure_scratch
from fabqual.drivers.scsi_disk import limit_queue, lio_naa_wwid, wait_disk
from fabqual.errors import DriverError, TopologyError
from fabqual.executors.base import Executor
from fabqual.handles import BlockDevice
from fabqual.line_rate import LineRate, PortRate
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.carriers import carrier_for
from fabqual.links.carriers.base import carrier_needs
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, hba_needs, module, scratch_needs, tool
from fabqual.tools import fio
from fabqual.topology.grammar import DISCOVER
from fabqual.topology.model import FcpParams, Link, Node, Topology

LIO_VENDOR = "LIO-ORG"  # the INQUIRY vendor id LIO gives every backstore (wwn/vendor_id)
SERIAL_NAMESPACE = uuid.UUID("6f1c3a52-2b0e-4d8e-9a57-3c1f0e0fcf01")  # fabqual's fcp unit serials
DISK_TIMEOUT = 30.0


def unit_serial(link: str) -> str:
    """The LUN's unit serial: 32 hex digits fixed per link name (the same LUN identity every run)."""
    return uuid.uuid5(SERIAL_NAMESPACE, f"fcp/{link}").hex


def product_id(link: str) -> str:
    """The LUN's INQUIRY product id (16 characters at most, as SPC allows)."""
    return f"fabqual {link}"[:16]


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    carrier = link.params.carrier if isinstance(link.params, FcpParams) else "fc"
    reqs = hba_needs(node, device)
    if role == "target":
        reqs += [Requirement("configfs", "/sys/kernel/config"), module("target_core_iblock")]
        if isinstance(link.params, FcpParams):
            reqs += scratch_needs(node, (link.params.backstore,))
    else:
        reqs += [module("sd_mod"), tool("fio")]
    return reqs + carrier_needs(carrier, node, device, role)  # fabric module, fcoe, qla2xxx target mode


def check(topology: Topology, link: Link) -> None:
    """The backstore is a scratch device of the target; two nodes; each HBA fits the carrier."""
    assert isinstance(link.params, FcpParams)
    base = f"links.{link.name}"
    target, initiator = (topology.node(link.end(role).node) for role in ("target", "initiator"))
    if link.params.backstore not in {s.name for s in target.scratch_devices}:
        raise TopologyError(
            topology.source,
            f"{base}.backstore",
            f"node {target.name!r} has no scratch device named {link.params.backstore!r};"
            " only scratch devices are ever exported",
        )
    if target.name == initiator.name:
        raise TopologyError(
            topology.source,
            f"{base}.initiator.node",
            f"target and initiator are both {target.name!r}; FCP runs between two nodes' FC ports",
        )
    for role, node in (("target", target), ("initiator", initiator)):
        device = link.end(role).device
        hba = node.hba(device) if device else None
        if hba is None:
            continue  # the loader already named the missing device
        if link.params.carrier == "fc" and hba.emulation != "none":
            raise TopologyError(
                topology.source,
                f"{base}.carrier",
                f"carrier fc needs real HBAs, but {node.name}'s {hba.name} is emulated ({hba.emulation});"
                " use carrier: fcoe for a software FCoE port",
            )
        if link.params.carrier == "fcoe" and hba.netdev in (None, DISCOVER):
            raise TopologyError(
                topology.source,
                f"{base}.{role}.device",
                f"carrier fcoe needs the Ethernet interface of {node.name}'s HBA {hba.name}; give it netdev:",
            )


SPEC = LinkSpec(
    name="fcp",
    short="fcp",
    params=FcpParams,
    roles={"target": "fcp_target", "initiator": "fcp_initiator"},
    device_kind="HBA",
    capabilities=("block_device",),
    metrics=fio.SPEC.metric_names,
    requirements=requirements,
    check=check,
    description="SCSI over Fibre Channel: an LIO LUN (tcm_qla2xxx, or tcm_fc over software FCoE) as /dev/sdX",
)


@link_type(SPEC)
class FcpLink:
    def __init__(self, context: LinkContext) -> None:
        self.context = context
        self.link = context.link
        self.journal = Journal(context.run_dirs)
        if not isinstance(self.link.params, FcpParams):
            raise DriverError(f"link {self.link.name}: fcp link without fcp params")
        self.params: FcpParams = self.link.params

    def up(self) -> LinkSession:
        carrier = carrier_for(self.params.carrier, self.context, self.journal)
        ends = carrier.ends()  # checked before anything on the fabric changes
        target, initiator = ends.target, ends.initiator
        node = self.context.topology.node(self.link.end("target").node)
        scratch = ensure_scratch(target, self.journal, node.scratch(self.params.backstore))
        serial = unit_serial(self.link.name)

        def backing(lio: Lio) -> Backstore:
            name = f"fq_fcp_{self.link.name}"
            return lio.iblock(name, scratch.device, unit_serial=serial, product=product_id(self.link.name))

        modprobe(initiator, "sd_mod")  # the disk driver binds as the LUN appears
        lun = carrier.export(backing, vendor=LIO_VENDOR, model=product_id(self.link.name))
        wwid = lio_naa_wwid(serial)
        disk = wait_disk(
            initiator,
            wwid,
            timeout=DISK_TIMEOUT,
            hint=f"the LUN answered as {lun.sg.path} ({lun.sg.hctl}) but no disk carries the WWN LIO derives"
            f" from unit serial {serial}",
        )
        if disk.host != lun.sg.host:
            raise DriverError(
                f"link {self.link.name}: {initiator.node}'s disk {disk.path} with WWID {wwid} is on {disk.host},"
                f" not on the link's initiator port {lun.sg.host}"
            )
        limits = {
            key: value
            for key, value in (("max_sectors_kb", self.params.max_sectors_kb), ("queue_depth", self.params.queue_depth))
            if value is not None
        }
        tuned = limit_queue(initiator, self.journal, disk, limits)
        size = int(read(initiator, f"/sys/block/{disk.name}/size") or 0) * 512
        line_rate = LineRate.one_path(*self._port_rates(target, initiator, lun))
        facts = {
            "carrier": lun.carrier,
            "backstore": f"{lun.backstore.plugin}_{lun.backstore.index}/{lun.backstore.name} on {scratch.device}",
            "unit_serial": serial,
            "disk": f"{initiator.node}:{disk.path} ({disk.hctl}, {disk.vendor} {disk.model})",
            "wwid": disk.wwid,
            "line_rate": line_rate.describe(),
        }
        facts.update(tuned)
        if lun.target_port and lun.initiator_port:
            facts["target_wwpn"] = lun.target_port.wwpn
            facts["initiator_wwpn"] = lun.initiator_port.wwpn
        facts[f"scratch {scratch.name}"] = scratch.fact()  # declared → kernel device, serial/WWID
        device = BlockDevice(
            link=self.link,
            host=initiator,
            device=disk.path,
            scratch=True,  # the backstore is always a scratch device proven safe (ensure_scratch)
            size_bytes=size,
            facts=facts,
            line_rate=line_rate,
        )
        return LinkSession(self.link, block_device=device, facts=facts)

    def _port_rates(self, target: Executor, initiator: Executor, lun: ExportedLun) -> tuple[PortRate, PortRate]:
        rates = []
        for executor, port in ((target, lun.target_port), (initiator, lun.initiator_port)):
            if port is None:
                rates.append(PortRate(executor.node, "FC port", None, f"carrier {lun.carrier} names no FC port"))
                continue
            rates.append(fc_rate(executor.node, port.port if isinstance(port, FcoeController) else port))
        return rates[0], rates[1]

    def down(self) -> None:
        self.journal.undo_all()
