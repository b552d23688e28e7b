"""Native NVMe multipath: every path live under one namespace, and I/O carried on when a path goes.

A link with ``extra_paths`` exports its subsystem on several target ports; the
host connects each, and the kernel's native multipath puts one namespace head
over all of them. The first test checks that every declared path is a live
controller of the one subsystem. The second takes each path away in turn at the
target (its port stops exporting the subsystem) while fio writes through the
head with crc32c verification: the writes and the read-back must finish without
an error, the path must be seen down meanwhile, and once it is given back every
path must be live again. Taking the path that carries the I/O away is the
failover case; taking an idle one must not disturb anything.
"""

from __future__ import annotations

import threading
import time

import pytest

from fabqual.drivers.nvme_host import NvmePath, parse_list_subsys
from fabqual.errors import FabqualError
from fabqual.handles import FabricFault, NvmeNamespace
from fabqual.tools.fio import FioResult, run_fio
from fabqual.topology.model import Link

FAULT_AFTER_S = 3.0  # fio is writing when the path goes
PATH_GONE_S = 8.0  # how long the path stays away once the host has seen it go
SEEN_DOWN_TIMEOUT_S = 30.0
FIO: dict[str, str] = {"rw": "randwrite", "bs": "16k", "size": "96M"}
IODEPTH = 8


def subsystem_paths(namespace: NvmeNamespace) -> list[NvmePath]:
    out = namespace.host.run("nvme list-subsys -o json", timeout=60).stdout
    return [p for s in parse_list_subsys(out) if s.nqn == namespace.subsystem_nqn for p in s.paths]


def path_of(fault: FabricFault, paths: list[NvmePath]) -> NvmePath | None:
    """The controller whose address has every ``key=value`` of the fault's path address."""
    wanted = set(fault.path_address.split(","))
    return next((p for p in paths if wanted <= set(p.address.replace(" ", "").split(","))), None)


@pytest.mark.capability("nvme_multipath")
def test_every_path_is_live(link: Link, nvme_multipath: NvmeNamespace) -> None:
    """One live controller per declared path, all of one subsystem, one namespace device over them."""
    paths = subsystem_paths(nvme_multipath)
    missing = [f.path_address for f in nvme_multipath.path_faults if path_of(f, paths) is None]
    assert not missing, f"no controller of {nvme_multipath.subsystem_nqn} for {missing}; have {paths}"
    states = {p.name: p.state for p in paths}
    assert all(state == "live" for state in states.values()), f"not every path is live: {states}"
    assert len(paths) == len(nvme_multipath.path_faults), (
        f"{len(paths)} controllers for {len(nvme_multipath.path_faults)} paths: {paths}"
    )


@pytest.mark.fabric_fault
@pytest.mark.capability("nvme_multipath")
def test_io_continues_while_one_path_is_gone(link: Link, nvme_multipath: NvmeNamespace, check_metric) -> None:  # type: ignore[no-untyped-def]
    """Verified writes through the namespace head finish cleanly while each path in turn is taken away."""
    for fault in nvme_multipath.path_faults:
        result, seen = write_while_path_is_gone(nvme_multipath, fault)
        context = {"rw": FIO["rw"], "bs": FIO["bs"], "qd": str(IODEPTH), "path_lost": seen}
        check_metric(link, "iops", result.direction(FIO["rw"]).iops, context=context)
    test_every_path_is_live(link, nvme_multipath)


def write_while_path_is_gone(namespace: NvmeNamespace, fault: FabricFault) -> tuple[FioResult, str]:
    """fio's result for verified writes during which ``fault`` took its path away, and how the host saw it."""
    outcome: dict[str, object] = {}

    def workload() -> None:
        try:
            outcome["result"] = run_fio(
                namespace.host, filename=namespace.device, iodepth=IODEPTH, runtime_s=600, verify="crc32c", **FIO
            )
        except FabqualError as error:
            outcome["error"] = error

    thread = threading.Thread(target=workload, name="fio-under-path-loss")
    thread.start()
    try:
        time.sleep(FAULT_AFTER_S)
        assert thread.is_alive(), f"fio finished within {FAULT_AFTER_S} s: raise its size so the path loss lands in it"
        fault.inject()
        try:
            seen = wait_path_down(namespace, fault)
            time.sleep(PATH_GONE_S)
        finally:
            fault.repair()  # every path live again, also when the checks above fail
    finally:
        thread.join(900)
    assert not thread.is_alive(), f"fio did not finish after {fault.description} and repair"
    assert "error" not in outcome, f"I/O failed while only one path was gone ({fault.description}): {outcome['error']}"
    result = outcome["result"]
    assert isinstance(result, FioResult)
    return result, seen


def wait_path_down(namespace: NvmeNamespace, fault: FabricFault) -> str:
    """The state the host shows for the taken path once it is no longer live (it must notice)."""
    deadline = time.monotonic() + SEEN_DOWN_TIMEOUT_S
    while True:
        path = path_of(fault, subsystem_paths(namespace))
        if path is None:
            return "removed"
        if path.state != "live":
            return f"{path.name} {path.state}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} still live {SEEN_DOWN_TIMEOUT_S:.0f} s after: {fault.description}")
        time.sleep(0.5)
