"""FCoE + LIO drivers, the real carrier on the running lab.

The tests bring software FCoE up between the two emulated-lab guests, export
a backstore of ``tgt`` through ``tcm_fc`` to ``ini``, drive it with sg3_utils on
``ini``, and prove teardown leaves no FCoE controller, LIO target or backstore.
They use the session's shared lab (tests/self/conftest.py) and never stop it.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from fabqual.drivers.background import BackgroundProcess
from fabqual.drivers.fcoe import fcoe_state
from fabqual.drivers.journal import Journal
from fabqual.drivers.lio import Lio, lio_state
from fabqual.drivers.lio_export import export_over_fcoe, export_over_loop, ramdisk
from fabqual.drivers.rundir import RUNS
from fabqual.drivers.scsi_generic import parse_sg_dd_rate
from fabqual.errors import DriverError
from fabqual.executors.base import Executor
from fabqual.topology import Topology


@pytest.fixture(scope="module")
def guests(topology: Topology) -> Iterator[tuple[Executor, Executor]]:
    """The two guests of the session's shared lab (tests/self/conftest.py)."""
    from fabqual.executors.ssh import SshExecutor

    tgt, ini = (SshExecutor.for_node(topology.node(name)) for name in ("tgt", "ini"))
    yield tgt, ini
    tgt.close()
    ini.close()


def assert_clean(tgt: Executor, ini: Executor) -> None:
    assert fcoe_state(tgt) == [] and fcoe_state(ini) == [], "an FCoE controller was left behind"
    assert lio_state(tgt) == {"backstores": [], "targets": []}, "an LIO object was left on tgt"
    assert "tcm_fc" not in ini.run("lsmod", timeout=30).stdout, "tcm_fc must never be loaded on the initiator"


def test_ramdisk_over_fcoe_reads_writes_and_tears_down(guests: tuple[Executor, Executor]) -> None:
    """A tcm_fc LUN crosses the data link: INQUIRY/TUR answer, 128 KiB writes read back equal,
    and teardown leaves no controller, target or backstore."""
    tgt, ini = guests
    journal = Journal()
    try:
        lun = export_over_fcoe(
            tgt,
            ini,
            journal,
            ramdisk("fq_selftest_rd", 32 << 20),
            target_netdev="eth1",
            initiator_netdev="eth1",
            vendor="LIO-ORG",
            model="RAMDISK-MCP",
        )
        sg = lun.sg.path
        inq = ini.run(f"sg_inq {sg}", timeout=60).stdout
        assert "PDT=0" in inq and "LIO-ORG" in inq
        ini.run(f"sg_turs {sg}", timeout=60)
        pattern = "/tmp/fq_selftest_pattern"
        ini.run(f"head -c {8 << 20} /dev/urandom > {pattern}", timeout=60)
        try:
            write = ini.run(f"sg_dd if={pattern} of={sg} bs=512 bpt=256 time=1 2>&1", timeout=300).stdout
            read = ini.run(f"sg_dd if={sg} of={pattern}.back bs=512 bpt=256 count=16384 time=1 2>&1", timeout=300)
            ini.run(f"cmp {pattern} {pattern}.back", timeout=60)
        finally:
            ini.run(f"rm -f {pattern} {pattern}.back", timeout=30)
        assert parse_sg_dd_rate(write)[1] > 0 and parse_sg_dd_rate(read.stdout)[1] > 0
    finally:
        journal.undo_all()
    assert_clean(tgt, ini)


def test_tcmu_runner_fbo_over_fcoe(guests: tuple[Executor, Executor]) -> None:
    """The TCMU path (docs/emulated-lab.md) with a known-good peer: Debian's tcmu-runner (fbo, a CD-ROM) answers
    INQUIRY on the far side through user_0 → tcm_fc → FCoE → sg."""
    tgt, ini = guests
    image, logs = "/var/tmp/fq_selftest_fbo.img", "/var/tmp/fq_selftest_tcmu"
    if not tgt.run("command -v tcmu-runner", timeout=30, check=False).ok:
        pytest.fail("tgt has no tcmu-runner; the lab image should ship it (`fabqual doctor`)")
    journal = Journal()
    try:
        tgt.run(f"truncate -s 16M {image} && mkdir -p {logs}", timeout=30)
        journal.record_command(tgt, "fbo image", f"rm -rf {image} {logs}")
        runner = BackgroundProcess(
            tgt, journal, "tcmu-runner", f"exec tcmu-runner -l {logs}", log_file=f"{logs}/stdout.log"
        )

        def fbo(lio: Lio):  # type: ignore[no-untyped-def]
            store, _uio = lio.user_backstore("fq_selftest_fbo", 16 << 20, "fbo", "/" + image)
            return store

        lun = export_over_fcoe(
            tgt, ini, journal, fbo, target_netdev="eth1", initiator_netdev="eth1", vendor="LIO-ORG", model="VOPTA"
        )
        runner.check_alive()
        assert lun.sg.device_type == 5  # CD-ROM, answered by the userspace handler
        read = ini.run(f"sg_dd if={shlex.quote(lun.sg.path)} of=/dev/null bs=2048 bpt=64 count=4096 time=1 2>&1")
        assert parse_sg_dd_rate(read.stdout)[1] > 0
    finally:
        journal.undo_all()
    assert_clean(tgt, ini)
    assert not tgt.run("pgrep -x tcmu-runner", timeout=30, check=False).ok


def test_ramdisk_over_tcm_loop_one_node(guests: tuple[Executor, Executor]) -> None:
    """The one-node fallback carrier: tcm_loop shows the backstore as a local sg device; teardown drops
    the nexus (the local SCSI host) and leaves nothing."""
    tgt, ini = guests
    journal = Journal()
    try:
        lun = export_over_loop(tgt, journal, ramdisk("fq_selftest_rd", 4 << 20), vendor="LIO-ORG", model="RAMDISK-MCP")
        assert lun.carrier == "tcm_loop" and lun.sg.device_type == 0
        tgt.run(f"sg_turs {lun.sg.path}", timeout=60)
    finally:
        journal.undo_all()
    assert_clean(tgt, ini)
    hosts = tgt.run("grep -l tcm_loop /sys/class/scsi_host/*/proc_name 2>/dev/null; true", timeout=30).stdout
    assert not hosts.strip(), f"a tcm_loop SCSI host was left: {hosts}"


def test_failed_bring_up_leaves_nothing(guests: tuple[Executor, Executor]) -> None:
    """A bring-up that fails after the controllers and backstore exist is undone completely."""
    tgt, ini = guests
    journal = Journal()
    with pytest.raises(DriverError, match="no SCSI generic device"):
        try:
            export_over_fcoe(
                tgt,
                ini,
                journal,
                ramdisk("fq_selftest_rd", 4 << 20),
                target_netdev="eth1",
                initiator_netdev="eth1",
                vendor="NOBODY",
                model="NOTHING",
            )
        finally:
            journal.undo_all()
    assert_clean(tgt, ini)


def test_link_up_with_a_dying_handler_fails_clearly_and_leaves_nothing(
    guests: tuple[Executor, Executor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target handler that exits at once fails up() with its own last words, and down() removes
    the runtime upload, LIO objects, FCoE controllers and logs."""
    from fabqual.executors.ssh import SshExecutor
    from fabqual.lab import EmulatedLab
    from fabqual.links import ipofc
    from fabqual.links.base import LinkContext, driver_for
    from fabqual.topology import load_topology

    monkeypatch.setattr(ipofc, "TARGET_COMMAND", "echo handler gave up on {uio} >&2; exit 3")
    tgt, ini = guests
    topology = load_topology(EmulatedLab().topology_path)
    link = next(link for link in topology.links if link.type == "ipofc")
    executors = {"tgt": tgt, "ini": ini}
    driver = driver_for(LinkContext(topology, link, lambda name: executors[name]))
    assert isinstance(driver, ipofc.IpofcLink) and isinstance(tgt, SshExecutor)
    try:
        with pytest.raises(
            DriverError,
            match=r"IPoFC target daemon \(pid \d+\) exited.*:\n +handler gave up on /dev/uio",
        ):
            driver.up()
    finally:
        driver.down()
    assert_clean(tgt, ini)
    # The runtime and daemon logs lived in the run's private directory, removed with the last undo.
    assert not tgt.run(f"ls -A {RUNS} 2>/dev/null", timeout=30).stdout.strip(), "runtime files left on tgt"


def test_tcm_loop_fallback_link_carries_ping_and_leaves_nothing(guests: tuple[Executor, Executor]) -> None:
    """carrier: tcm_loop puts target and initiator on one node with the tunnel ends in two network
    namespaces; ping crosses the tunnel, and down() removes namespaces, LIO objects and files."""
    import dataclasses

    from fabqual.lab import EmulatedLab
    from fabqual.links.base import LinkContext, driver_for
    from fabqual.tools.ping import run_ping
    from fabqual.topology import load_topology
    from fabqual.topology.model import IpofcParams

    tgt, ini = guests
    topology = load_topology(EmulatedLab().topology_path)
    link = next(link for link in topology.links if link.type == "ipofc")
    assert isinstance(link.params, IpofcParams)
    params = dataclasses.replace(link.params, carrier="tcm_loop", tunnel_prefix="10.77.1.0/30")
    link = dataclasses.replace(link, name="ipofcloop", params=params)
    driver = driver_for(LinkContext(topology, link, lambda name: {"tgt": tgt, "ini": ini}[name]))
    try:
        tunnel = driver.up().ip_tunnel
        assert tunnel.carrier == "tcm_loop" and tunnel.initiator.netns and tunnel.target.netns
        result = run_ping(tunnel.initiator.executor, tunnel.target.address, 10, 0.2, 1472)
        assert result.loss_pct == 0.0, result
    finally:
        driver.down()
    assert_clean(tgt, ini)
    leftovers = tgt.run(f"ip netns list; ls -A {RUNS} 2>/dev/null; true", timeout=30).stdout
    assert not leftovers.strip(), f"left on tgt: {leftovers}"
