"""Conformance, Reservations: two hosts register, acquire, preempt and release; a non-holder's write is refused.

Probed, not assumed: the link's controller must set ONCS bit 5 (``nvme
id-ctrl``); kernel nvmet up to 6.12 does not (the lab's 6.1 and 6.12 guests
show ONCS 0xc), so there the case skips with the value read. Where it runs,
the link's host connects the link's subsystem a second and third time under
two host NQNs of fabqual's (``conf-resv-a``, ``conf-resv-b``) and sends each
command through that host's controller; the only write is one block of a
namespace declared scratch.
"""

from __future__ import annotations

import re

import pytest

from fabqual.conformance.attempt import HostIdentity, attempt_connect
from fabqual.conformance.fabric import NvmeFabric, live_controller
from fabqual.conformance.reservations import Registrant, reservations_missing
from fabqual.handles.nvme import NvmeNamespace
from fabqual.plugin.conformance import ConformanceCase
from fabqual.topology.model import Link

CONFLICT = re.compile(r"(?i)reservation.?conflict")
BLOCK_BYTES = 4096


def _registrant(fabric: NvmeFabric, purpose: str, key: int) -> Registrant:
    identity = HostIdentity(fabric.nqn(purpose))
    attempt = attempt_connect(fabric, fabric.spec(fabric.subsystem_nqn), identity)
    assert not attempt.refused and attempt.controllers, f"{identity.hostnqn} could not connect: {attempt.describe()}"
    return Registrant(fabric.host, fabric.journal, attempt.controllers[0], 1, key)


@pytest.mark.conformance(case="reservations.write_exclusive", category="Reservations")
@pytest.mark.capability("nvme_namespace")
def test_reservation_holder_excludes_other_writers(
    link: Link, nvme_namespace: NvmeNamespace, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """Host A acquires a Write Exclusive reservation: B's write fails with a reservation conflict; B preempts A
    and then writes; B releases."""
    controller = live_controller(nvme_fabric.nvme, nvme_fabric.subsystem_nqn).name
    missing = reservations_missing(nvme_fabric.host, controller)
    if missing:
        pytest.skip(missing)
    if not nvme_namespace.scratch:
        pytest.skip(
            f"{nvme_namespace.device} on {link.name} is not a scratch device: the conflicting write is not tried"
        )
    a = _registrant(nvme_fabric, "resv-a", 0xFAB0A)
    b = _registrant(nvme_fabric, "resv-b", 0xFAB0B)
    a.register()
    b.register()
    a.acquire()
    accepted, said = b.write_one_block(BLOCK_BYTES)
    assert not accepted and CONFLICT.search(said), f"a non-holder's write under Write Exclusive was not refused: {said}"
    b.preempt(a)
    accepted, said = b.write_one_block(BLOCK_BYTES)
    assert accepted, f"the holder (after preempting) could not write: {said}"
    accepted, said = a.write_one_block(BLOCK_BYTES)
    assert not accepted and CONFLICT.search(said), f"the preempted host could still write: {said}"
    b.release()
