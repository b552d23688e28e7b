"""Conformance, ANA: a namespace on two ports stepped through its ANA states under verified writes.

The case exports the link's scratch device in a subsystem of its own on two
nvmet ports, its namespace in an ANA group of its own (group 2) on each, and
connects both paths: one namespace head over two controllers. For every I/O
policy the host's kernel takes (written and read back: numa and round-robin
on 6.1, queue-depth from 6.11), fio writes with crc32c verification through
the head while one path at a time steps optimized → non-optimized →
inaccessible → persistent-loss (where the target takes it) → optimized and
the other stays optimized. Asserted per step: the host's ``ana_state`` of
that path follows (the time is a measured ``ana_follow_s``); while the
stepping path is not optimized no I/O completes on it and some does on the
optimized one (the path devices' ``stat``); an inaccessible path still answers
an admin command (Identify Controller); and no write or verify ever fails.
"""

from __future__ import annotations

import shlex
import threading
import time

import pytest

from fabqual.conformance.case_port import case_port
from fabqual.conformance.fabric import NvmeFabric
from fabqual.conformance.scratch_subsystem import exporting_ports, own_subsystem
from fabqual.drivers.nvme_paths import (
    accepted_io_policies,
    ana_states,
    path_device,
    path_stats,
    set_io_policy,
    subsystem_of,
)
from fabqual.drivers.nvmet import ROOT
from fabqual.errors import FabqualError
from fabqual.plugin.conformance import ConformanceCase
from fabqual.tools.fio import run_fio
from fabqual.topology.model import Link

ANA_GROUP = 2  # the case's own group on each port; group 1 keeps the link's own namespaces
STEPS = ("non-optimized", "inaccessible", "persistent-loss", "optimized")
FOLLOW_TIMEOUT_S = 60.0
SETTLE_S = 1.0  # I/O dispatched before the change may still complete on the old path
DWELL_S = 3.0


class Writer:
    """Verified fio writes through the namespace head, again and again until stopped; every failure kept."""

    def __init__(self, fabric: NvmeFabric, device: str) -> None:
        self.errors: list[str] = []
        self.runs = 0
        self._stop = threading.Event()

        def write() -> None:
            while not self._stop.is_set():
                try:
                    run_fio(
                        fabric.host,
                        filename=device,
                        rw="randwrite",
                        bs="16k",
                        size="16M",
                        iodepth=8,
                        runtime_s=300,
                        verify="crc32c",
                    )
                    self.runs += 1
                except FabqualError as error:
                    self.errors.append(str(error))
                    return

        self._thread = threading.Thread(target=write, name="fio-ana")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(600)
        assert not self._thread.is_alive(), "verified writes did not finish within 600 s of being asked to stop"


def two_ports(fabric: NvmeFabric) -> list[tuple[str, dict[str, str]]]:
    """Two ports exporting the case's subsystem, with what reaches each: the link's own two, or the link's
    port and one made for the case."""
    ports = [(port, {"trsvcid": trsvcid}) for port, trsvcid in exporting_ports(fabric)]
    if len(ports) >= 2:
        return ports[:2]
    extra = case_port(fabric)
    if isinstance(extra, str):
        pytest.skip(f"one path, so no multipath head to step ANA states under: {extra}")
    return [ports[0], (extra.port_id, extra.changes())]


def set_state(fabric: NvmeFabric, port: str, state: str) -> bool:
    """Write the case's group state on ``port``; False when the target's kernel refuses that state."""
    attribute = shlex.quote(f"{ROOT}/ports/{port}/ana_groups/{ANA_GROUP}/ana_state")
    return fabric.target.run(f"echo {shlex.quote(state)} > {attribute}", timeout=30, check=False).ok


def follow(fabric: NvmeFabric, device: str, state: str) -> float:
    """Seconds until the host shows ``state`` for path ``device``."""
    start = time.monotonic()
    while True:
        seen = ana_states(fabric.host, [device]).get(device)
        if seen == state:
            return time.monotonic() - start
        if time.monotonic() - start > FOLLOW_TIMEOUT_S:
            raise AssertionError(
                f"{device}: ana_state still {seen!r} {FOLLOW_TIMEOUT_S:.0f} s after the target set {state}"
            )
        time.sleep(0.2)


@pytest.mark.conformance(case="ana.state_transitions", category="ANA")
@pytest.mark.capability("nvme_namespace")
def test_ana_states_under_verified_writes(link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase) -> None:
    """Per I/O policy: each path steps through the ANA states while the other stays optimized; the host follows,
    I/O leaves a path that is not optimized, an inaccessible path answers admin commands, no write fails."""
    fabric = nvme_fabric
    ports = two_ports(fabric)
    nqn = own_subsystem(fabric, "ana", [p for p, _ in ports], ana_group=ANA_GROUP)
    controllers = [c for _, where in ports for c in fabric.nvme.connect(fabric.spec(nqn, **where))]
    devices = [path_device(fabric.host, c) for c in controllers]
    head = fabric.nvme.namespace_device(nqn).path
    subsystem = subsystem_of(fabric.host, controllers[0])
    policies, refused = accepted_io_policies(fabric.host, subsystem)
    assert policies, f"{subsystem}: the host took none of the I/O policies ({refused})"
    refused_states: dict[str, str] = {}
    for policy in policies:
        set_io_policy(fabric.host, subsystem, policy)
        writer = Writer(fabric, head)
        try:
            for moving in (0, 1):
                other = 1 - moving
                port, device, controller = ports[moving][0], devices[moving], controllers[moving]
                for state in STEPS:
                    if not set_state(fabric, port, state):
                        refused_states[state] = f"{fabric.target.node}: nvmet refused ana_state {state}"
                        continue
                    context = {"iopolicy": policy, "state": state, "path": device}
                    conformance.time("ana_follow_s", follow(fabric, device, state), context=context)
                    time.sleep(SETTLE_S)
                    before = path_stats(fabric.host, devices)
                    time.sleep(DWELL_S)
                    after = path_stats(fabric.host, devices)
                    moved = {d: after[d].reads + after[d].writes - before[d].reads - before[d].writes for d in devices}
                    assert not writer.errors, (
                        f"I/O failed with {devices[other]} optimized ({policy}, {state}): {writer.errors[0]}"
                    )
                    if state != "optimized":
                        assert moved[device] == 0, (
                            f"{moved[device]} I/Os completed on {device} while {state} ({policy}): {moved}"
                        )
                        assert moved[devices[other]] > 0, (
                            f"no I/O on the optimized {devices[other]} ({policy}, {device} {state}): {moved}"
                        )
                    if state == "inaccessible":
                        admin = fabric.host.run(f"nvme id-ctrl /dev/{controller}", timeout=60, check=False)
                        assert admin.ok, (
                            f"{controller} ({state}) did not answer Identify Controller: {admin.stderr.strip()}"
                        )
        finally:
            for port, _ in ports:
                set_state(fabric, port, "optimized")
            writer.stop()
        assert not writer.errors, f"verified writes failed under {policy}: {writer.errors[0]}"
        assert writer.runs > 0, f"no verified write run finished under {policy}"
    for state, why in refused_states.items():
        conformance.node.add_report_section("call", "ANA", f"{state} not stepped: {why}")
