"""Conformance, Discovery: the discovery log follows the target's configuration.

Each case makes its own subsystems (``nqn.2024-01.io.fabqual:conf-*``, no
namespaces) and ports on the link's kernel nvmet target, reads the discovery
log from the link's host over the link's own path, and removes what it made
when it ends (the case's journal; a killed run's sweep replays it). blktests
nvme/002, 016, 017 and 030 check the same counter on loop and tcp; here it is
every link offering an NVMe namespace.
"""

from __future__ import annotations

import shlex
import time

import pytest

from fabqual.conformance.attempt import HostIdentity, controllers_of
from fabqual.conformance.fabric import NvmeFabric
from fabqual.drivers.nvme_aen import DISCOVERY_CHANGE, AenWatch, autoconnect_missing
from fabqual.drivers.nvme_discovery import DISCOVERY_NQN, DiscoveryLog, connect_persistent, read_discovery_log
from fabqual.drivers.nvmet import PortAddress
from fabqual.drivers.nvmet_referrals import add_referral, remove_referral
from fabqual.errors import DriverError
from fabqual.plugin.conformance import ConformanceCase
from fabqual.topology.model import Link

# A second port on an IP transport listens on the link's address at this service id.
SECOND_TRSVCID = "4431"
# A referral names another discovery controller; it need not answer (the log only carries its address).
REFERRAL = "conf-referral"
REFERRED_TRSVCID = "4430"
REFERRED_FC = "nn-0x20000000fab0c0f1:pn-0x20000000fab0c0f2"


def _log(fabric: NvmeFabric, **where: str) -> DiscoveryLog:
    return read_discovery_log(fabric.nvme, fabric.spec(fabric.subsystem_nqn, **where))


def _moved(before: DiscoveryLog, after: DiscoveryLog, what: str) -> None:
    assert after.genctr > before.genctr, (
        f"the discovery log's generation counter stayed {before.genctr} -> {after.genctr} when {what}"
    )


@pytest.mark.conformance(case="discovery.generation_counter", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_generation_counter_follows_subsystems(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """A subsystem exported on the link's port enters its discovery log and GENCTR moves; removed, both again."""
    nqn = nvme_fabric.subsystem("genctr")
    nvmet = nvme_fabric.nvmet
    start = _log(nvme_fabric)
    assert nqn not in start.subsystems()
    nvmet.link_port(nvme_fabric.port_id, nqn)
    added = _log(nvme_fabric)
    assert nqn in added.subsystems(), f"{nqn} exported on port {nvme_fabric.port_id} but not in the log: {added}"
    _moved(start, added, f"{nqn} was exported on port {nvme_fabric.port_id}")
    nvmet.unlink_port(nvme_fabric.port_id, nqn)
    removed = _log(nvme_fabric)
    assert nqn not in removed.subsystems(), f"{nqn} no longer exported but still in the log: {removed}"
    _moved(added, removed, f"{nqn} stopped being exported on port {nvme_fabric.port_id}")


@pytest.mark.conformance(case="discovery.generation_counter_port", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_generation_counter_follows_ports(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """A second port exporting a subsystem moves the counter the link's port shows, and its own log offers it."""
    nqn = nvme_fabric.subsystem("genctr-port")
    nvmet, path = nvme_fabric.nvmet, nvme_fabric.path
    second = path.trsvcid and SECOND_TRSVCID
    port = nvmet.create_port(PortAddress(path.trtype, path.traddr, second or ""))
    start = _log(nvme_fabric)
    try:
        nvmet.link_port(port, nqn)  # the kernel enables the port with its first subsystem
    except DriverError as error:
        why = str(error).rsplit(": ", 1)[-1]  # the kernel's reason, e.g. "Operation already in progress"
        pytest.skip(f"{nvme_fabric.target.node}: nvmet-{path.trtype} refused a second port on {path.traddr} ({why})")
    added = _log(nvme_fabric)
    _moved(start, added, f"port {port} ({path.trtype} {path.traddr} {second}) started exporting {nqn}")
    if second:
        assert nqn in _log(nvme_fabric, trsvcid=second).subsystems(), f"the new port's log does not offer {nqn}"
    nvmet.unlink_port(port, nqn)
    removed = _log(nvme_fabric)
    _moved(added, removed, f"port {port} stopped exporting {nqn}")


@pytest.mark.conformance(case="discovery.referrals", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_referral_appears_in_the_log(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """A referral configured on the link's port is a referral entry of its discovery log (address as configured),
    GENCTR moves; removed, the entry goes and GENCTR moves again."""
    path = nvme_fabric.path
    points_to = PortAddress(
        path.trtype, REFERRED_FC if path.trtype == "fc" else path.traddr, path.trsvcid and REFERRED_TRSVCID
    )
    start = _log(nvme_fabric)
    add_referral(nvme_fabric.target, nvme_fabric.journal, nvme_fabric.port_id, REFERRAL, points_to)
    added = _log(nvme_fabric)
    _moved(start, added, f"referral {REFERRAL} was added to port {nvme_fabric.port_id}")
    matching = [
        r
        for r in added.referrals()
        if (r.trtype, r.traddr, r.trsvcid) == (points_to.trtype, points_to.traddr, points_to.trsvcid)
    ]
    assert matching, f"no referral entry for {points_to} in the log: {added.records}"
    assert matching[0].subnqn == DISCOVERY_NQN, f"the referral entry names {matching[0].subnqn}, not the discovery NQN"
    remove_referral(nvme_fabric.target, nvme_fabric.port_id, REFERRAL)
    removed = _log(nvme_fabric)
    assert not [r for r in removed.referrals() if r.traddr == points_to.traddr and r.trsvcid == points_to.trsvcid]
    _moved(added, removed, f"referral {REFERRAL} was removed")


@pytest.mark.conformance(case="discovery.connect_all", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_connect_all_connects_exactly_the_allowed(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """`nvme connect-all` connects every subsystem the host may use (open to any host, or listing its NQN) and
    none it may not (listing another host), and adds no second controller to one already connected."""
    fabric = nvme_fabric
    other = HostIdentity(fabric.nqn("host-other")).hostnqn
    wanted = {
        fabric.subsystem("all-open", export=True),
        fabric.subsystem("all-mine", allowed=(fabric.hostnqn,), export=True),
    }
    refused = {fabric.subsystem("all-other", allowed=(other,), export=True)}
    for nqn in wanted | refused:
        fabric.nvme.journal_disconnect(nqn)
    link_controllers = controllers_of(fabric.nvme, fabric.subsystem_nqn)
    command = shlex.join(["nvme", "connect-all", *fabric.path.args(), "-q", fabric.hostnqn])
    start = time.monotonic()
    result = fabric.host.run(command, timeout=300, check=False)
    conformance.time("connect_all_s", time.monotonic() - start)
    connected = {nqn for nqn in wanted | refused if controllers_of(fabric.nvme, nqn)}
    said = (result.stdout + result.stderr).strip()
    assert connected == set(wanted), f"connect-all connected {sorted(connected)}, expected {sorted(wanted)} ({said})"
    assert controllers_of(fabric.nvme, fabric.subsystem_nqn) == link_controllers, (
        f"connect-all added a controller to {fabric.subsystem_nqn}, which was connected already ({said})"
    )


@pytest.mark.conformance(case="discovery.persistent_aen", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_persistent_controller_gets_the_change(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """A persistent discovery controller (`nvme discover -p`) is sent a discovery log change AEN when a subsystem
    is exported on its port (the host kernel's NVME_AEN=0x70f002 uevent), and its log then offers the subsystem."""
    fabric = nvme_fabric
    nqn = fabric.subsystem("aen")
    controller = connect_persistent(fabric.nvme, fabric.journal, fabric.path)
    watch = AenWatch(fabric.host, fabric.journal)
    start = read_discovery_log(fabric.nvme, fabric.path, device=controller)  # reading it re-arms the AEN
    fabric.nvmet.link_port(fabric.port_id, nqn)
    bound = conformance.policy.times["aen_s"].maximum
    try:
        seconds = watch.wait_for(controller, DISCOVERY_CHANGE, timeout=max(bound * 2, 60.0))
    except DriverError as error:
        pytest.fail(f"{error}; the target sent no discovery log change notice", pytrace=False)
    conformance.time("aen_s", seconds)
    changed = read_discovery_log(fabric.nvme, fabric.path, device=controller)
    assert nqn in changed.subsystems(), f"after the AEN the persistent controller's log does not offer {nqn}"
    _moved(start, changed, f"{nqn} was exported (read through persistent controller {controller})")


@pytest.mark.conformance(case="discovery.persistent_autoconnect", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_connect_all_persistent_connects_what_is_added(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """Under `nvme connect-all --persistent`, a subsystem exported later is connected by the host on its own
    (AEN → udev → nvme-cli's nvmf-connect@ service), within the profile's bound."""
    fabric = nvme_fabric
    missing = autoconnect_missing(fabric.host)
    if missing:
        pytest.skip(missing)
    nqn = fabric.subsystem("autoconnect")
    fabric.nvme.journal_disconnect(nqn)
    connect_persistent(fabric.nvme, fabric.journal, fabric.path, connect_all=True)
    fabric.nvmet.link_port(fabric.port_id, nqn)
    bound = conformance.policy.times["autoconnect_s"].maximum
    start = time.monotonic()
    while not controllers_of(fabric.nvme, nqn):
        if time.monotonic() - start > max(bound * 2, 60.0):
            pytest.fail(
                f"{fabric.host.node}: {nqn} was not connected {bound * 2:.0f} s after it was exported", pytrace=False
            )
        time.sleep(1.0)
    conformance.time("autoconnect_s", time.monotonic() - start)
