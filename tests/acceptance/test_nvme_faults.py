"""Taking the fabric away mid-workload makes fio fail with a clear message, and the link recovers.

The link's fault handle breaks the path between host and target (the fcloop
remote port deleted, the host's RDMA netdev set down, or for NVMe/TCP the target's
ports no longer exporting the subsystem) while fio reads. The
host was connected with a short ``fast_io_fail_tmo``, so I/O fails instead of
being queued for the whole ``ctrl_loss_tmo``: fio must stop with an I/O error
that names the device, which is the "device misbehaved" path working. The
fabric is then repaired and the controller must come back live, so the link
serves later tests and its teardown removes everything as usual. The repair
reconnects a controller that does not come back by itself and hands the
session's later tests the namespace's current device; this test then reads
through that device to prove it. ``fabric_fault`` puts it after the link's
other rows (``tests/acceptance/conftest.py``), so nothing measures a link that
was just broken.
"""

from __future__ import annotations

import shlex
import threading
import time

import pytest

from fabqual.errors import FabqualError
from fabqual.handles import NvmeNamespace
from fabqual.links.base import LinkSession
from fabqual.tools.fio import run_fio
from fabqual.topology.model import Link

FIO_RUNTIME_S = 60  # long enough that only the fault can end it early
FAULT_AFTER_S = 8.0  # let fio get going before the fabric goes


@pytest.mark.fabric_fault
@pytest.mark.capability("nvme_namespace")
def test_fabric_loss_fails_io_clearly(link: Link, nvme_namespace: NvmeNamespace, link_session: LinkSession) -> None:
    """fio dies with an I/O error naming the namespace device; the path is live again after repair."""
    fault = nvme_namespace.fault
    if fault is None:
        pytest.skip(f"link {link.name} has no safe way to take its fabric away (real HBAs are not unplugged)")
    outcome: dict[str, object] = {}

    def workload() -> None:
        started = time.monotonic()
        try:
            outcome["result"] = run_fio(
                nvme_namespace.host,
                filename=nvme_namespace.device,
                rw="randread",
                bs="4k",
                iodepth=8,
                runtime_s=FIO_RUNTIME_S,
            )
        except FabqualError as error:
            outcome["error"] = error
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=workload, name="fio-under-fault")
    thread.start()
    try:
        time.sleep(FAULT_AFTER_S)
        fault.inject()
        thread.join(FIO_RUNTIME_S + 120)
    finally:
        fault.repair()  # also when the assertions below fail: later tests need the path
    assert not thread.is_alive(), "fio neither failed nor finished after the fabric was taken away"
    assert "result" not in outcome, f"fio reported success although the fabric was gone ({fault.description})"
    message = str(outcome["error"])
    assert "Input/output error" in message or "error=" in message, f"fio failed without an I/O error: {message}"
    assert nvme_namespace.device in message, f"the failure does not name {nvme_namespace.device}: {message}"
    assert float(outcome["seconds"]) < FIO_RUNTIME_S, "fio ran its full time: I/O was queued, not failed"  # type: ignore[arg-type]
    after = link_session.nvme_namespace  # the repair may have reconnected: a new controller, maybe a new name
    read = after.host.run(
        f"dd if={shlex.quote(after.device)} of=/dev/null bs=64k count=16 iflag=direct", timeout=60, check=False
    )
    assert read.ok, f"{after.device} does not serve reads after the repair: {(read.stderr or read.stdout).strip()}"
