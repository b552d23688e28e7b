"""Conformance, Access control: the target refuses what it must, and a refused connect leaves nothing behind.

Each case exports an empty subsystem of its own (``nqn.2024-01.io.fabqual:conf-*``)
on the link's port, then has the link's host connect with one thing wrong: a
host NQN the subsystem does not allow, a subsystem NQN the target does not
have, a port or a transport address nobody listens on. The connect must be
refused with the error the kernel gives for that fault (read from nvme-cli and
the host kernel's log of that attempt), and neither node may keep a controller
or an nvmet object from it. blktests nvme/003 and nvme/045 do the same on loop
and tcp.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from fabqual.conformance.attempt import Attempt, HostIdentity, attempt_connect
from fabqual.conformance.fabric import NvmeFabric
from fabqual.conformance.snapshot import nvme_state
from fabqual.drivers.nvme_host import ConnectSpec
from fabqual.errors import LabError
from fabqual.plugin.conformance import ConformanceCase
from fabqual.topology.model import Link

# What the kernel says for each fault, per transport (the host's words; nvme-cli adds its errno).
# Observed on the emulated lab's 6.1 guests; a transport not listed must give some reason at all.
REASONS: dict[str, dict[str, str]] = {
    "host_not_allowed": {"*": r"Connect for subsystem \S+ is not allowed"},
    "wrong_subsystem_nqn": {"*": r"Connect Invalid Data Parameter, subsysnqn"},
    "wrong_port": {
        "rdma": r"rdma connection establishment failed|Connect rejected|Connection refused|Connection reset",
        "tcp": r"failed to connect socket|Connection refused",
        "fc": r"No such device|No such file|not found|Invalid argument",
    },
    "wrong_traddr": {
        "rdma": r"address resolution failed|rdma connection establishment failed|No route|timed out|unreachable",
        "tcp": r"failed to connect socket|No route|timed out|unreachable",
        "fc": r"No such device|No such file|not found|Invalid argument",
    },
}
# A service id nothing on the target listens on (IP transports).
UNUSED_TRSVCID = "4439"


def _refused(
    fabric: NvmeFabric, conformance: ConformanceCase, fault: str, spec: ConnectSpec, who: HostIdentity
) -> Attempt:
    """Attempt the connect; it must be refused for ``fault``'s reason and leave both nodes as they were."""
    before = nvme_state(fabric.host, fabric.target)
    attempt = attempt_connect(fabric, spec, who)
    conformance.time("refusal_s", attempt.seconds, {"fault": fault})
    assert attempt.refused and not attempt.controllers, f"{fault}: the connect was not refused: {attempt.describe()}"
    reasons = REASONS[fault]
    pattern = reasons.get(spec.trtype, reasons.get("*", r"\S"))
    assert attempt.said(pattern), (
        f"{fault}: refused, but not with the kernel's reason /{pattern}/: {attempt.describe()}"
    )
    left = before.difference(nvme_state(fabric.host, fabric.target))
    assert not left, f"{fault}: the refused connect left state behind: {left}"
    return attempt


@pytest.mark.conformance(case="access.host_not_allowed", category="Access")
@pytest.mark.capability("nvme_namespace")
def test_host_not_allowed_is_refused(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """A subsystem that allows one host NQN refuses another, and the allowed one connects over the same path."""
    allowed, stranger = HostIdentity(nvme_fabric.nqn("host-allowed")), HostIdentity(nvme_fabric.nqn("host-stranger"))
    nqn = nvme_fabric.subsystem("acl", allowed=(allowed.hostnqn,), export=True)
    _refused(nvme_fabric, conformance, "host_not_allowed", nvme_fabric.spec(nqn), stranger)
    welcome = attempt_connect(nvme_fabric, nvme_fabric.spec(nqn), allowed)
    assert not welcome.refused and welcome.controllers, f"the allowed host NQN was refused: {welcome.describe()}"


@pytest.mark.conformance(case="access.wrong_subsystem_nqn", category="Access")
@pytest.mark.capability("nvme_namespace")
def test_wrong_subsystem_nqn_is_refused(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """A subsystem NQN the target does not have, on the right port, is refused as an invalid connect parameter."""
    absent = nvme_fabric.nqn("absent")
    nvme_fabric.nvmet.remove_stale(absent)
    _refused(
        nvme_fabric,
        conformance,
        "wrong_subsystem_nqn",
        nvme_fabric.spec(absent),
        HostIdentity(nvme_fabric.hostnqn, own=True),
    )


@pytest.mark.conformance(case="access.wrong_port", category="Access")
@pytest.mark.capability("nvme_namespace")
def test_wrong_port_is_refused(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """The right subsystem through a port the target does not have (IP: a service id nobody listens on; FC: a
    WWPN no remote port has, under the target's WWNN) is refused."""
    nqn = nvme_fabric.subsystem("port", export=True)
    spec = nvme_fabric.spec(nqn)
    if spec.trtype == "fc":
        wrong = nvme_fabric.spec(nqn, traddr=_other_fc_name(spec.traddr, node=False))
    else:
        wrong = nvme_fabric.spec(nqn, trsvcid=UNUSED_TRSVCID)
    _refused(nvme_fabric, conformance, "wrong_port", wrong, HostIdentity(nvme_fabric.hostnqn, own=True))


@pytest.mark.conformance(case="access.wrong_traddr", category="Access")
@pytest.mark.capability("nvme_namespace")
def test_wrong_traddr_is_refused(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """The right subsystem at a transport address nobody has (IP: a silent address on the link's subnet; FC: a
    WWNN:WWPN pair no remote port has) is refused, in bounded time."""
    nqn = nvme_fabric.subsystem("traddr", export=True)
    spec = nvme_fabric.spec(nqn)
    if spec.trtype == "fc":
        wrong = nvme_fabric.spec(nqn, traddr=_other_fc_name(spec.traddr, node=True))
    else:
        wrong = nvme_fabric.spec(nqn, traddr=_silent_address(nvme_fabric))
    _refused(nvme_fabric, conformance, "wrong_traddr", wrong, HostIdentity(nvme_fabric.hostnqn, own=True))


def _other_fc_name(traddr: str, *, node: bool) -> str:
    """``nn-0x..:pn-0x..`` with the port name (and, with ``node``, the node name) changed to one nobody has."""
    found = re.fullmatch(r"nn-0x([0-9a-fA-F]{16}):pn-0x([0-9a-fA-F]{16})", traddr)
    if found is None:
        raise LabError(f"FC traddr {traddr!r} is not nn-0x<16 hex>:pn-0x<16 hex>")
    wwnn, wwpn = int(found[1], 16), int(found[2], 16)
    return f"nn-0x{wwnn ^ (0xFAB0 if node else 0):016x}:pn-0x{wwpn ^ 0xFAB0:016x}"


def _silent_address(fabric: NvmeFabric) -> str:
    """An address on the target's /24 that does not answer a ping from the host (so the host resolves it and fails)."""
    network = ipaddress.ip_network(f"{fabric.path.traddr}/24", strict=False)
    for last in (254, 253, 250, 249):
        candidate = str(network.network_address + last)
        if candidate in (fabric.path.traddr, fabric.path.host_traddr):
            continue
        if not fabric.host.run(f"ping -c 1 -W 1 {candidate}", timeout=30, check=False).ok:
            return candidate
    raise LabError(f"{fabric.host.node}: every candidate address on {network} answers; none is free to test with")
