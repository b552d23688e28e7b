"""The ``ipofc`` link: IP through SCSI commands, carried by LIO over Fibre Channel.

Composition, target end first (the ORDER rule, docs/emulated-lab.md):

1. the carrier (``carrier:``, one module each under :mod:`fabqual.links.carriers`:
   ``fcoe`` between two nodes, ``fc`` on real QLogic HBAs, ``tcm_loop`` on one
   node) resolves both ends before anything changes;
2. both nodes: the fabqual runtime uploaded, TUN devices made with addresses from
   ``tunnel_prefix`` and the first MTU of the link;
3. target node: the runtime's TCMU handler started, a ``user`` backstore served
   by it, which the carrier exports as LUN 0 to the initiator end, found there as
   ``/dev/sgN`` by fabqual's INQUIRY vendor/product (peripheral type 6, so only
   ``sg`` binds) and checked with sg3_utils' ``sg_inq``;
4. the initiator's tunnel process, then one ping across.

Everything is journaled; ``down()`` undoes it in reverse, also after a failed ``up()``.
"""

from __future__ import annotations

import ipaddress
import shlex
import time
from pathlib import Path

import fabqual
from fabqual.drivers.background import BackgroundProcess
from fabqual.drivers.journal import Journal, write
from fabqual.drivers.lio import Backstore, Lio
from fabqual.drivers.lio_export import Backing, sg_inquiry_identity
from fabqual.errors import DriverError, TopologyError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.netns import NetnsExecutor
from fabqual.handles import IpTunnel, TunnelEnd
from fabqual.ipofc.scsi import PERIPHERAL_DEVICE_TYPE_SCANNER, StandardInquiry
from fabqual.links.base import LinkContext, LinkSession
from fabqual.links.carriers import carrier_for, carrier_names
from fabqual.links.carriers.base import carrier_needs
from fabqual.linkspec import LinkSpec, link_type
from fabqual.requirement import Requirement, hba_needs, module, tool
from fabqual.tools import iperf3, ping
from fabqual.topology.load import check_mtus
from fabqual.topology.model import IpofcParams, Link, Node, Topology

TUN_NAMES = {"target": "fqipfc0", "initiator": "fqipfc1"}


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


# The guest runtime's entry points (fabqual.ipofc.*, run with python3 from the uploaded copy).
HANDLER = "fabqual"  # TCMU dev_config subtype the target daemon claims its uio device by
TARGET_COMMAND = "exec python3 -m fabqual.ipofc.target_daemon --uio {uio} --tun {tun}{offload}"
INITIATOR_COMMAND = "exec python3 -m fabqual.ipofc.initiator_daemon --sg {sg} --tun {tun}{offload}"
TCMU_OPTIONS = {
    "hw_block_size": "512",
    "hw_max_sectors": "8192",  # the dispatcher's max_transfer_blocks: 4 MiB per command
    "max_data_area_mb": "256",
    "nl_reply_supported": "-1",  # no tcmu-runner answers netlink for the fabqual subtype
}
TUNNEL_UP_TIMEOUT = 60.0


# Offloaded TCP builds super-packets of ~1 ms of its pacing rate (TSO autosizing): at a tunnel's
# tens of Mb/s that is the floor, 2 segments, and offload then saves little. 44 x 1448-byte MSS
# is one 64 KiB super-packet. Measured on the lab at MTU 1500: 17-25 Mb/s at 2, 42-46 Mb/s at 44.
MIN_TSO_SEGS = 44
MIN_TSO_SEGS_PATH = "/proc/sys/net/ipv4/tcp_min_tso_segs"


def raise_min_tso_segs(executor: Executor, journal: Journal) -> None:
    """Raise ``tcp_min_tso_segs`` where a tunnel end runs (its network namespace); the old value comes back."""
    found = executor.run(f"cat {MIN_TSO_SEGS_PATH}", timeout=30, check=False).stdout.strip()
    if not found.isdigit():
        log_step(executor.node, f"no {MIN_TSO_SEGS_PATH} here: TCP keeps its own super-packet sizes")
        return
    if int(found) >= MIN_TSO_SEGS:
        return
    log_step(executor.node, f"tcp_min_tso_segs {found} -> {MIN_TSO_SEGS} for the tunnel's TCP")
    # The old value goes into the node's journal before the change: a run killed right after it is undone too.
    journal.record_command(executor, f"tcp_min_tso_segs {found}", f"echo {found} > {MIN_TSO_SEGS_PATH}")
    write(executor, MIN_TSO_SEGS_PATH, str(MIN_TSO_SEGS))


class TunDevice:
    """A persistent TUN device the runtime attaches to; address and MTU are set here."""

    def __init__(self, executor: Executor, journal: Journal, ifname: str, address: str, prefix_length: int) -> None:
        self.executor = executor
        self.ifname = ifname
        q = shlex.quote(ifname)
        log_step(executor.node, f"create TUN {ifname} with {address}/{prefix_length}")
        executor.run(f"ip link del dev {q} 2>/dev/null; ip tuntap add dev {q} mode tun", timeout=30)
        journal.record_command(executor, f"TUN {ifname}", f"ip link del dev {q}")
        executor.run(f"ip addr add {shlex.quote(f'{address}/{prefix_length}')} dev {q}", timeout=30)

    def set_mtu(self, mtu: int) -> None:
        log_step(self.executor.node, f"set {self.ifname} MTU {mtu} and up")
        self.executor.run(f"ip link set dev {shlex.quote(self.ifname)} mtu {mtu} up", timeout=30)


def requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    carrier = link.params.carrier if isinstance(link.params, IpofcParams) else "fc"
    reqs = hba_needs(node, device)
    reqs += [module("tun"), module("sg"), tool("ping"), tool("iperf3"), tool("python3")]
    if role == "target":
        reqs += [module("target_core_user"), Requirement("configfs", "/sys/kernel/config")]
    else:
        reqs.append(tool("sg_inq"))
    return reqs + carrier_needs(carrier, node, device, role)


def check(topology: Topology, link: Link) -> None:
    assert isinstance(link.params, IpofcParams)
    check_mtus(topology, link, link.params.mtus)
    known = carrier_names()
    if link.params.carrier not in known:
        raise TopologyError(
            topology.source,
            f"links.{link.name}.carrier",
            f"not one of {', '.join(known)} (the registered IPoFC carriers) (got {link.params.carrier!r})",
        )


SPEC = LinkSpec(
    name="ipofc",
    short="ipofc",
    params=IpofcParams,
    roles={"target": "ipofc_end", "initiator": "ipofc_end"},
    device_kind="HBA",
    capabilities=("ip_tunnel",),
    metrics=ping.SPEC.metric_names + iperf3.SPEC.metric_names,
    requirements=requirements,
    check=check,
    description="IP tunnelled through SCSI commands over FC (fabqual's TCMU handler on the target)",
)


@link_type(SPEC)
class IpofcLink:
    def __init__(self, context: LinkContext) -> None:
        self.context = context
        self.link = context.link
        self.journal = Journal(context.run_dirs)
        if not isinstance(self.link.params, IpofcParams):
            raise DriverError(f"link {self.link.name}: ipofc link without ipofc params")
        self.params: IpofcParams = self.link.params
        self.inquiry = StandardInquiry()
        self.processes: list[BackgroundProcess] = []

    def remote_dir(self, executor: Executor) -> str:
        """Where the runtime lives on a node: in the run's private directory, per link (two may share a node)."""
        return f"{self.journal.run_dirs.path(executor)}/ipofc-{self.link.name}"

    def _start(self, executor: Executor, role: str, command: str) -> BackgroundProcess:
        remote_dir = self.remote_dir(executor)
        process = BackgroundProcess(
            executor,
            self.journal,
            f"IPoFC {role} daemon",
            f"cd {shlex.quote(remote_dir)} && {command}",
            log_file=f"{remote_dir}/{role}.log",
        )
        self.processes.append(process)
        return process

    def _offload_flag(self) -> str:
        return " --offload" if self.params.offload else ""  # both daemons alike: the header is in every record

    def _tcmu_backing(self, where: Executor, uio_out: list[str]) -> Backing:
        """The tunnel LUN's backstore: TCMU served by the target daemon (started once its uio exists)."""

        def backing(lio: Lio) -> Backstore:
            store, uio = lio.user_backstore(
                f"fq_ipofc_{self.link.name}", dispatch_capacity_bytes(), HANDLER, self.link.name, options=TCMU_OPTIONS
            )
            uio_out.append(uio)
            command = TARGET_COMMAND.format(uio=uio, tun=TUN_NAMES["target"], offload=self._offload_flag())
            daemon = self._start(where, "target", command)
            daemon.wait_for_line(r"^ready target ")  # serving the ring before the LUN is exported and scanned
            return store

        return backing

    def up(self) -> LinkSession:
        carrier = carrier_for(self.params.carrier, self.context, self.journal)
        address_t, address_i, prefix_length = tunnel_addresses(self.params.tunnel_prefix)
        vendor, model = self.inquiry.vendor, self.inquiry.product
        mtu = self.params.mtus[0]
        ends = carrier.ends()  # checked before anything on the fabric changes
        target, initiator, target_run, initiator_run = ends.target, ends.initiator, ends.target_run, ends.initiator_run
        for node in {target.node: target, initiator.node: initiator}.values():
            upload_runtime(node, self.journal, self.remote_dir(node))
        # TUNs exist (addressed) before the daemons start: they attach and never create their own.
        tuns = [
            TunDevice(target_run, self.journal, TUN_NAMES["target"], address_t, prefix_length),
            TunDevice(initiator_run, self.journal, TUN_NAMES["initiator"], address_i, prefix_length),
        ]
        for tun in tuns:
            tun.set_mtu(mtu)
        if self.params.offload:
            for end in (target_run, initiator_run):
                raise_min_tso_segs(end, self.journal)

        uio: list[str] = []
        backing = self._tcmu_backing(target_run, uio)
        try:
            lun = carrier.export(backing, vendor=vendor, model=model)
        except DriverError:
            for process in self.processes:
                process.check_alive()  # a dead handler is the cause of a LUN that never answered
            raise
        self.processes[0].check_alive()
        pdt, got_vendor, got_product = sg_inquiry_identity(initiator, lun.sg.path)
        if (pdt, got_vendor, got_product) != (PERIPHERAL_DEVICE_TYPE_SCANNER, vendor, model):
            raise DriverError(
                f"link {self.link.name}: sg_inq {lun.sg.path} on {initiator.node} shows type {pdt}"
                f" {got_vendor!r} {got_product!r}, expected type 6 {vendor!r} {model!r}"
            )
        daemon = self._start(
            initiator_run,
            "initiator",
            INITIATOR_COMMAND.format(sg=lun.sg.path, tun=TUN_NAMES["initiator"], offload=self._offload_flag()),
        )
        daemon.wait_for_line(r"^ready initiator ")
        self._wait_tunnel(initiator_run, address_t)

        def set_mtu_both(new_mtu: int) -> None:
            for tun in tuns:
                tun.set_mtu(new_mtu)
            for process in self.processes:
                process.check_alive()

        facts = {
            "carrier": lun.carrier,
            "sg_device": lun.sg.path,
            "uio_device": uio[0] if uio else "",
            "backstore": f"{lun.backstore.plugin}_{lun.backstore.index}/{lun.backstore.name}",
            "offload": f"TUN checksum + TSO, tcp_min_tso_segs >= {MIN_TSO_SEGS}" if self.params.offload else "none",
        }
        if lun.target_port and lun.initiator_port:
            facts["target_wwpn"] = lun.target_port.wwpn
            facts["initiator_wwpn"] = lun.initiator_port.wwpn
        tunnel = IpTunnel(
            link=self.link,
            target=TunnelEnd(target_run, address_t, prefix_length, TUN_NAMES["target"], "target", _netns(target_run)),
            initiator=TunnelEnd(
                initiator_run, address_i, prefix_length, TUN_NAMES["initiator"], "initiator", _netns(initiator_run)
            ),
            carrier=lun.carrier,
            mtu=mtu,
            set_mtu_both=set_mtu_both,
            facts=facts,
        )
        return LinkSession(self.link, ip_tunnel=tunnel, facts=facts)

    def _wait_tunnel(self, initiator: Executor, address: str) -> None:
        """Until one ping crosses the tunnel; a dead runtime process fails at once with its log."""
        deadline = time.monotonic() + TUNNEL_UP_TIMEOUT
        while not initiator.run(f"ping -c 1 -W 2 {shlex.quote(address)}", timeout=30, check=False).ok:
            for process in self.processes:
                process.check_alive()
            if time.monotonic() > deadline:
                logs = "; ".join(
                    f"{p.name}: {' | '.join(p.log_tail().strip().splitlines()[-3:]) or 'no output'}"
                    for p in self.processes
                )
                raise DriverError(
                    f"link {self.link.name}: no ping from {initiator.node} reached {address} through the tunnel"
                    f" within {TUNNEL_UP_TIMEOUT:.0f} s ({logs})"
                )

    def down(self) -> None:
        self.journal.undo_all()


def _netns(executor: Executor) -> str | None:
    return executor.netns if isinstance(executor, NetnsExecutor) else None


def dispatch_capacity_bytes() -> int:
    """The TCMU device size: the dispatcher's LBA range, so LIO and the handler agree on it."""
    from fabqual.ipofc.dispatch import LunConfig

    config = LunConfig()
    return config.capacity_blocks * config.block_size
