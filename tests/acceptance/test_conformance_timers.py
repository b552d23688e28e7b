"""Conformance, Timers: a path taken away and given back, measured against the timers the host connected with.

Each case exports the link's own scratch namespace in a subsystem of its own
(``conf-timers-*``) on the link's nvmet port, connects it with explicit
``--keep-alive-tmo``, ``--reconnect-delay``, ``--ctrl-loss-tmo`` and (where the
host kernel has the attribute) ``fast_io_fail_tmo``, reads through it with fio,
and takes the path away by removing the subsystem from the port (the target
drops its controllers; the host keeps reconnecting, every attempt refused)
— the link's own subsystem and controller are untouched. Times are measured
on the controller's clock from the moment the port stopped exporting, by
polling the host's ``/sys/class/nvme/nvmeX/state``; reconnect intervals come
from the host kernel's log. Bounds are the profile's ``conformance:`` times.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import pytest

from fabqual.conformance.case_port import CasePort, case_port
from fabqual.conformance.fabric import NvmeFabric
from fabqual.conformance.reconnects import intervals, reconnect_failures
from fabqual.conformance.scratch_subsystem import own_subsystem, relink, unlink
from fabqual.drivers.nvme_host import ConnectSpec
from fabqual.drivers.nvme_paths import wait_state
from fabqual.errors import FabqualError
from fabqual.plugin.conformance import ConformanceCase
from fabqual.tools.fio import run_fio
from fabqual.topology.model import Link

KEEP_ALIVE_S = 5
RECONNECT_DELAY_S = 2
FIO_START_S = 3.0  # fio is reading when the path goes


@dataclass
class Reader:
    """fio reading the case's namespace in the background: how it ended, and when (controller clock)."""

    thread: threading.Thread
    outcome: dict[str, object]

    def wait(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"fio still running {timeout:.0f} s after the path was taken away"

    @property
    def error(self) -> str:
        return str(self.outcome.get("error", ""))

    @property
    def ended(self) -> float:
        value = self.outcome["ended"]
        assert isinstance(value, float)
        return value


def start_reader(fabric: NvmeFabric, device: str, runtime_s: int) -> Reader:
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            outcome["result"] = run_fio(
                fabric.host, filename=device, rw="randread", bs="4k", iodepth=4, runtime_s=runtime_s
            )
        except FabqualError as error:
            outcome["error"] = error
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=read, name="fio-timers")
    thread.start()
    time.sleep(FIO_START_S)
    assert thread.is_alive(), f"fio ended within {FIO_START_S} s: {outcome}"
    return Reader(thread, outcome)


def own_path(fabric: NvmeFabric, purpose: str) -> tuple[str, CasePort]:
    """The case's subsystem on a port of its own (the link's path is never taken away)."""
    port = case_port(fabric)
    if isinstance(port, str):
        pytest.skip(port)
    return own_subsystem(fabric, purpose, [port.port_id]), port


def connect(
    fabric: NvmeFabric, nqn: str, port: CasePort, *, ctrl_loss_tmo: int, fast_io_fail_tmo: int
) -> tuple[str, str]:
    """The case's controller and its namespace device, connected with the case's timers."""
    spec: ConnectSpec = fabric.spec(
        nqn,
        **port.changes(),
        ctrl_loss_tmo=ctrl_loss_tmo,
        reconnect_delay=RECONNECT_DELAY_S,
        fast_io_fail_tmo=fast_io_fail_tmo,
        keep_alive_tmo=KEEP_ALIVE_S,
    )
    (controller,) = fabric.nvme.connect(spec)
    return controller, fabric.nvme.namespace_device(nqn).path


def has_fast_io_fail(fabric: NvmeFabric, controller: str) -> bool:
    return fabric.host.run(f"test -e /sys/class/nvme/{controller}/fast_io_fail_tmo", timeout=30, check=False).ok


def uptime(fabric: NvmeFabric) -> float:
    return float(fabric.host.run("cat /proc/uptime", timeout=30).stdout.split()[0])


def failures_since(fabric: NvmeFabric, controller: str, since: float) -> list[float]:
    return reconnect_failures(fabric.host.run("dmesg", timeout=60).stdout, controller, since)


def take_path(fabric: NvmeFabric, nqn: str, port: CasePort) -> float:
    """Stop exporting ``nqn`` on the case's port (which then stops listening); the moment it was done."""
    unlink(fabric, nqn, port.port_id)
    return time.monotonic()


@pytest.mark.conformance(case="timers.path_recovery", category="Timers")
@pytest.mark.capability("nvme_namespace")
def test_path_back_within_the_window(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """Path taken away under reads: the host notices, retries every reconnect_delay, and once the path is back
    within ctrl_loss_tmo and fast_io_fail_tmo the controller is live again and no read failed."""
    fabric = nvme_fabric
    nqn, port = own_path(fabric, "timers-recovery")
    controller, device = connect(fabric, nqn, port, ctrl_loss_tmo=120, fast_io_fail_tmo=60)
    reader = start_reader(fabric, device, runtime_s=60)
    since = uptime(fabric)
    gone = take_path(fabric, nqn, port)
    try:
        detected = wait_state(fabric.host, controller, lambda s: s != "live", timeout=KEEP_ALIVE_S * 6)
        conformance.time("detect_s", detected - gone)
        deadline = time.monotonic() + RECONNECT_DELAY_S * 15
        failures = failures_since(fabric, controller, since)
        while len(failures) < 3 and time.monotonic() < deadline:
            time.sleep(1.0)
            failures = failures_since(fabric, controller, since)
    finally:
        relink(fabric, nqn, port.port_id)
    back = time.monotonic()
    live = wait_state(fabric.host, controller, lambda s: s == "live", timeout=90)
    conformance.time("recover_s", live - back)
    assert len(failures) >= 2, (
        f"{controller}: {len(failures)} failed reconnect attempt(s) logged while the path was gone"
    )
    gap = statistics.mean(intervals(failures))
    conformance.time("reconnect_interval_s", gap)
    assert gap >= RECONNECT_DELAY_S * 0.8, (
        f"{controller} retried every {gap:.2f} s, sooner than --reconnect-delay {RECONNECT_DELAY_S}"
    )
    reader.wait(120)
    assert not reader.error, f"a read failed although the path came back within the window: {reader.error}"


@pytest.mark.conformance(case="timers.path_loss", category="Timers")
@pytest.mark.capability("nvme_namespace")
def test_path_lost_for_good(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """Path taken away for good under reads: I/O fails once fast_io_fail_tmo has passed (not after ctrl_loss_tmo),
    and the controller is removed once ctrl_loss_tmo has passed, not before."""
    fabric = nvme_fabric
    ctrl_loss, fast_fail = 16, 4
    nqn, port = own_path(fabric, "timers-loss")
    controller, device = connect(fabric, nqn, port, ctrl_loss_tmo=ctrl_loss, fast_io_fail_tmo=fast_fail)
    failfast = has_fast_io_fail(fabric, controller)
    reader = start_reader(fabric, device, runtime_s=120)
    since = uptime(fabric)
    gone = take_path(fabric, nqn, port)
    detected = wait_state(fabric.host, controller, lambda s: s != "live", timeout=KEEP_ALIVE_S * 6)
    conformance.time("detect_s", detected - gone)
    removed = wait_state(fabric.host, controller, lambda s: s is None, timeout=ctrl_loss * 4 + 60, poll=0.5)
    reader.wait(60)
    assert reader.error, "fio finished cleanly although the path was gone for good"
    assert "Input/output error" in reader.error or "error=" in reader.error, (
        f"fio failed without an I/O error: {reader.error}"
    )
    if failfast:
        conformance.time("fast_fail_s", reader.ended - detected, context={"fast_io_fail_tmo_s": str(fast_fail)})
        assert reader.ended < removed, "reads failed only when the controller was removed, not after fast_io_fail_tmo"
    lost = removed - detected
    conformance.time("ctrl_loss_s", lost, context={"ctrl_loss_tmo_s": str(ctrl_loss)})
    # The kernel gives up after ctrl_loss_tmo / reconnect_delay attempts, the first at once: one delay early.
    assert lost >= ctrl_loss - 2 * RECONNECT_DELAY_S, (
        f"{controller} removed {lost:.1f} s after the loss, well before ctrl_loss_tmo {ctrl_loss}"
    )
    failures = failures_since(fabric, controller, since)
    assert len(failures) >= 2, f"{controller}: {len(failures)} failed reconnect attempt(s) logged before its removal"
    conformance.time("reconnect_interval_s", statistics.mean(intervals(failures)))


@pytest.mark.conformance(case="timers.dev_loss", category="Timers")
@pytest.mark.capability("nvme_namespace")
def test_remote_port_dev_loss(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """FC: the host's remote port for the target keeps the dev_loss_tmo it was given (FC transport class)."""
    fabric = nvme_fabric
    if fabric.path.trtype != "fc":
        pytest.skip(f"link {link.name} is {fabric.path.trtype}: dev_loss_tmo belongs to FC remote ports")
    traddr = fabric.path.traddr  # nn-0x...:pn-0x...
    wwpn = traddr.rsplit("pn-", 1)[-1]
    listing = fabric.host.run("grep -H . /sys/class/fc_remote_ports/*/port_name 2>/dev/null; true", timeout=30).stdout
    rport = next((line.split("/")[4] for line in listing.splitlines() if line.endswith(wwpn)), None)
    if rport is None:
        pytest.skip(
            f"{fabric.host.node}: no /sys/class/fc_remote_ports entry has WWPN {wwpn} (nvme-fcloop registers its"
            " remote ports with nvme-fc only, without the FC transport class, so dev_loss_tmo cannot be set or read)"
        )
    attribute = f"/sys/class/fc_remote_ports/{rport}/dev_loss_tmo"
    value = fabric.host.run(f"cat {attribute}", timeout=30).stdout.strip()
    conformance.time("dev_loss_tmo_s", float(value))
