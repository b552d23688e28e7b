"""The ``ipofc`` link: IP through SCSI commands, carried by LIO over Fibre Channel.

Composition, target end first (DESIGN.md's ORDER rule):

1. target node: FCoE controller on the data netdev, enabled (VN2VN, no switch);
2. initiator node: FCoE controller created but still disabled — its WWPN is known;
3. target node: the fabqual runtime uploaded and its TCMU handler started, a
   ``user`` backstore served by it, exported through ``tcm_fc`` as LUN 0 with an
   ACL for the initiator's WWPN (``tcm_fc`` is never loaded on the initiator);
4. initiator node: controller enabled, the target's rport attached, the LUN found
   as ``/dev/sgN`` by fabqual's INQUIRY vendor/product (peripheral type 6, so only
   ``sg`` binds), checked with sg3_utils' ``sg_inq``;
5. the tunnel processes on both ends, TUN devices with addresses from
   ``tunnel_prefix`` and the first MTU of the link.

``carrier: tcm_loop`` puts target and initiator on the target node through
``tcm_loop`` and the two tunnel ends in separate network namespaces.
Everything is journaled; ``down()`` undoes it in reverse, also after a failed ``up()``.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fabqual
from fabqual.drivers.fcoe import FcoeController, SoftFcoe
from fabqual.drivers.journal import Journal
from fabqual.drivers.lio import Backstore, Lio, loop_wwn
from fabqual.drivers.scsi_generic import SgDevice, wait_sg_device
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor, log_step
from fabqual.ipofc.scsi import StandardInquiry
from fabqual.links.base import LinkContext, LinkSession, register
from fabqual.topology.model import DISCOVER, IpofcParams

# Makes the LUN's backstore on the target node (a ramdisk for self-tests, TCMU for the link).
Backing = Callable[[Lio], Backstore]

LUN = 0
SG_TIMEOUT = 30.0
REMOTE_DIR = "/var/tmp/fabqual-ipofc"
TUN_NAMES = {"target": "fqipfc0", "initiator": "fqipfc1"}
NETNS = {"target": "fq-ipfc-t", "initiator": "fq-ipfc-i"}


@dataclass(frozen=True)
class ExportedLun:
    """A LUN of the target node as the initiator node sees it."""

    carrier: str
    sg: SgDevice
    backstore: Backstore
    target_port: FcoeController | None = None
    initiator_port: FcoeController | None = None


def export_over_fcoe(
    target: Executor,
    initiator: Executor,
    journal: Journal,
    backing: Backing,
    *,
    target_netdev: str,
    initiator_netdev: str,
    vendor: str,
    model: str,
) -> ExportedLun:
    """A backstore of ``target`` exported through tcm_fc over software FCoE to ``initiator``."""
    lio = Lio(target, journal)
    lio.prepare()
    target_port = SoftFcoe(target, journal).create(target_netdev)
    target_port = SoftFcoe(target, journal).enable(target_port)
    initiator_fcoe = SoftFcoe(initiator, journal)
    initiator_port = initiator_fcoe.create(initiator_netdev)  # disabled: only its WWPN is needed yet
    store = backing(lio)
    tpg = lio.fc_tpg(target_port.wwpn)
    lio.export(tpg, LUN, store)
    lio.allow(tpg, initiator_port.wwpn, LUN)
    initiator_port = initiator_fcoe.enable(initiator_port)
    initiator_fcoe.wait_target(initiator_port, target_port.wwpn)
    sg = wait_sg_device(initiator, vendor=vendor, model=model, host=initiator_port.host, timeout=SG_TIMEOUT)
    return ExportedLun("fcoe", sg, store, target_port, initiator_port)


def export_over_loop(node: Executor, journal: Journal, backing: Backing, *, vendor: str, model: str) -> ExportedLun:
    """A backstore of ``node`` exported to the same node through tcm_loop."""
    lio = Lio(node, journal)
    lio.prepare()
    store = backing(lio)
    tpg = lio.loop_tpg(loop_wwn("fq-ipofc-t"), loop_wwn("fq-ipofc-i"))
    lio.export(tpg, LUN, store)
    sg = wait_sg_device(node, vendor=vendor, model=model, timeout=SG_TIMEOUT)
    return ExportedLun("tcm_loop", sg, store)


def ramdisk(name: str, size_bytes: int) -> Backing:
    return lambda lio: lio.ramdisk(name, size_bytes)


def tunnel_addresses(prefix: str) -> tuple[str, str, int]:
    """Target and initiator addresses of a tunnel prefix: the first two hosts (.1 and .2 of a /30)."""
    try:
        network = ipaddress.ip_network(prefix, strict=False)
    except ValueError as error:
        raise DriverError(f"ipofc tunnel_prefix {prefix!r} is not a network: {error}") from None
    hosts = list(network.hosts())[:2] if network.num_addresses <= 1 << 16 else []
    if len(hosts) < 2:
        raise DriverError(f"ipofc tunnel_prefix {prefix!r} has fewer than two host addresses; use a /30 or larger")
    return str(hosts[0]), str(hosts[1]), network.prefixlen


def runtime_files() -> list[tuple[Path, str]]:
    """The stdlib-only modules the guest runtime needs, with their paths under the upload dir."""
    package = Path(fabqual.__file__).parent
    files = [(package / "errors.py", "fabqual/errors.py")]
    files += [(p, f"fabqual/ipofc/{p.name}") for p in sorted((package / "ipofc").glob("*.py"))]
    return files


def upload_runtime(executor: Executor, journal: Journal, remote_dir: str) -> None:
    """Copy the runtime to ``remote_dir`` (with an empty ``fabqual/__init__.py``: the guest has
    no paramiko/yaml, and the runtime needs none of the package's top level)."""
    log_step(executor.node, f"upload the fabqual ipofc runtime to {remote_dir}")
    q = shlex.quote(remote_dir)
    executor.run(f"rm -rf {q} && mkdir -p {q}/fabqual/ipofc && touch {q}/fabqual/__init__.py", timeout=30)
    journal.record_command(executor, f"runtime directory {remote_dir}", f"rm -rf {q}")
    for local, relative in runtime_files():
        executor.put(local, f"{remote_dir}/{relative}")


class Process:
    """A background process on a node, logged to a file that is shown when it fails."""

    def __init__(self, executor: Executor, journal: Journal, name: str, command: str, log_file: str) -> None:
        self.executor = executor
        self.name = name
        self.log_file = log_file
        log_step(executor.node, f"start {name}: {command}")
        out = executor.run(
            f"nohup setsid sh -c {shlex.quote(command)} > {shlex.quote(log_file)} 2>&1 < /dev/null & echo $!",
            timeout=30,
        )
        self.pid = int(out.stdout.split()[-1])
        journal.record(executor.node, f"{name} (pid {self.pid})", self.stop)

    def alive(self) -> bool:
        return self.executor.run(f"kill -0 {self.pid}", timeout=30, check=False).ok

    def log_tail(self, lines: int = 20) -> str:
        return self.executor.run(f"tail -n {lines} {shlex.quote(self.log_file)}", timeout=30, check=False).stdout

    def check_alive(self) -> None:
        if not self.alive():
            tail = " | ".join(self.log_tail().strip().splitlines()[-5:])
            raise DriverError(f"{self.executor.node}: {self.name} (pid {self.pid}) exited: {tail or 'no output'}")

    def stop(self) -> None:
        # setsid made the pid a process group: end the whole group, then wait for it to be gone.
        self.executor.run(
            f"kill -TERM -{self.pid} 2>/dev/null; for i in $(seq 50); do kill -0 {self.pid} 2>/dev/null || exit 0;"
            f" sleep 0.1; done; kill -KILL -{self.pid} 2>/dev/null; true",
            timeout=30,
        )


def fcoe_netdev(context: LinkContext, role: str) -> tuple[Executor, str]:
    end = context.link.end(role)
    node = context.topology.node(end.node)
    if end.device is None:
        raise DriverError(f"link {context.link.name}: the {role} end names no HBA (device:)")
    hba = node.hba(end.device)
    netdev = getattr(hba, "netdev", None)
    if not netdev or netdev == DISCOVER:
        raise LabError(
            f"{node.name}: HBA {hba.name} of link {context.link.name} has no netdev; FCoE needs the Ethernet interface"
        )
    return context.executor(node.name), netdev


def sg_inquiry_identity(executor: Executor, device: str) -> tuple[int, str, str]:
    """Peripheral type, vendor and product as sg3_utils' ``sg_inq`` reads them (an independent client)."""
    out = executor.run(f"sg_inq {shlex.quote(device)}", timeout=60).stdout
    pdt = re.search(r"PDT=(\d+)", out)
    vendor = re.search(r"Vendor identification:\s*(.*)", out)
    product = re.search(r"Product identification:\s*(.*)", out)
    if not (pdt and vendor and product):
        raise DriverError(f"{executor.node}: sg_inq {device} printed no PDT/vendor/product: {out.strip()[-200:]}")
    return int(pdt[1]), vendor[1].strip(), product[1].strip()


@register("ipofc")
class IpofcLink:
    def __init__(self, context: LinkContext) -> None:
        self.context = context
        self.link = context.link
        self.journal = Journal()
        if not isinstance(self.link.params, IpofcParams):
            raise DriverError(f"link {self.link.name}: ipofc link without ipofc params")
        self.params: IpofcParams = self.link.params
        self.inquiry = StandardInquiry()

    def up(self) -> LinkSession:
        raise DriverError(f"link {self.link.name}: the IPoFC runtime is not wired yet")

    def down(self) -> None:
        self.journal.undo_all()
