"""VCenterDriver against VMware's own vCenter simulator (vcsim, built from Debian's govmomi).

Everything here talks SOAP over verified TLS to a real vcsim process. Steps vcsim
does not implement (AddVirtualNic, uplink pnic assignment, rdmaDevice, the memory
reservation, per-host firewall state) are detected by the server's own fault or
read-back and the tests that need them skip with that reason; the requests the
driver sends for them on a real vCenter are checked in test_vcenter_requests.py.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from fabqual.drivers.rundir import RunOwner
from fabqual.errors import DriverError, LabError
from fabqual.testing.dead_run import dead_owner
from fabqual.vsphere import specs, vcsim
from fabqual.vsphere.marks import FIELD
from fabqual.vsphere.vcenter import Changes, VCenterDriver

pytestmark = pytest.mark.skipif(
    shutil.which("go") is None or not (vcsim.GOPATH / "src/github.com/vmware/govmomi/simulator").is_dir(),
    reason="vcsim needs Debian's golang-go and golang-github-vmware-govmomi-dev (apt-get install them)",
)

SWITCH, PORTGROUP, MTU = "DSwitch_PVRDMA", "DPortGroup_PVRDMA", 9000
HOSTS = [
    ("DC0_C0_H0", "vmnic1", "vmk1", "192.168.50.11/24"),
    ("DC0_C0_H1", "vmnic1", "vmk1", "192.168.50.12/24"),
]
VMS = ["DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"]


def driver_for(sim: vcsim.VcsimInstance, **kwargs: Any) -> VCenterDriver:
    args: dict[str, Any] = {"ca_file": str(sim.cert_path), "datacenter": "DC0", "tolerate_unimplemented": True}
    args.update(kwargs)
    return VCenterDriver(sim.address, sim.port, kwargs.pop("user", sim.user), sim.password, **args)


def snapshot(sim: vcsim.VcsimInstance) -> dict[str, Any]:
    """Everything the PVRDMA bring-up can touch, read through a separate session.

    Two normalisations, both matching ESXi's own defaults: an unset
    Net.PVRDMAVmknic reads as "" and an unset memoryReservationLockedToMax as False.
    """
    si = SmartConnect(
        host=sim.address,
        port=sim.port,
        user=sim.user,
        pwd=sim.password,
        sslContext=ssl.create_default_context(cafile=str(sim.cert_path)),
    )
    try:
        content = si.RetrieveContent()
        marked = {f.key for f in content.customFieldsManager.field or [] if f.name == FIELD}

        def every(kind: type) -> list[Any]:
            return list(content.viewManager.CreateContainerView(content.rootFolder, [kind], True).view)

        def mark(entity: Any) -> str:  # the last value: vcsim appends where vCenter replaces
            return next((str(v.value) for v in reversed(entity.customValue or []) if v.key in marked), "")

        state: dict[str, Any] = {
            "networks": sorted(f"{type(n).__name__}:{n.name}" for n in every(vim.Network)),
            "switches": {
                d.name: (sorted(h.name for h in d.summary.hostMember), d.config.maxMtu, mark(d))
                for d in every(vim.DistributedVirtualSwitch)
            },
        }
        for host in every(vim.HostSystem):
            try:
                option = host.configManager.advancedOption.QueryOptions("Net.PVRDMAVmknic")[0].value
            except vim.fault.InvalidName:
                option = ""
            rulesets = host.configManager.firewallSystem.firewallInfo.ruleset
            state[host.name] = {
                "option": option,
                "pvrdma_ruleset": next(r.enabled for r in rulesets if r.key == "pvrdma"),
                "vnics": sorted(v.device for v in host.config.network.vnic),
                "mark": mark(host),
            }
        for vm in every(vim.VirtualMachine):
            state[vm.name] = {
                "locked": bool(vm.config.memoryReservationLockedToMax),
                "devices": sorted(type(d).__name__ for d in vm.config.hardware.device),
                "mark": mark(vm),
            }
        return state
    finally:
        Disconnect(si)


@pytest.fixture(scope="module")
def sim() -> Iterator[vcsim.VcsimInstance]:
    with vcsim.running_vcsim() as instance:
        yield instance


@pytest.fixture(scope="module")
def configured(sim: vcsim.VcsimInstance) -> Iterator[tuple[VCenterDriver, Changes, dict[str, Any]]]:
    """Configure once for the module; on the way out, teardown must restore the starting inventory."""
    before = snapshot(sim)
    driver = driver_for(sim)
    driver.connect()
    try:
        changes = driver.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
        yield driver, changes, before
    finally:
        driver.teardown()
        driver.close()
    assert snapshot(sim) == before


def unsupported_reason(changes: Changes, needle: str) -> str | None:
    hits = [str(u) for u in changes.unsupported if needle in u.step]
    return "; ".join(hits) if hits else None


def test_first_run_changes_and_reads_back(configured: tuple[VCenterDriver, Changes, dict[str, Any]]) -> None:
    driver, changes, _ = configured
    assert not changes.nothing_changed
    targets = {c.target for c in changes.changed}
    assert {f"switch {SWITCH}", f"port group {PORTGROUP} on {SWITCH}", "host DC0_C0_H0", "host DC0_C0_H1"} <= targets
    assert {f"VM {name}" for name in VMS} <= targets
    si = driver.service_instance
    content = si.RetrieveContent()
    switches = content.viewManager.CreateContainerView(content.rootFolder, [vim.DistributedVirtualSwitch], True).view
    dvs = next(d for d in switches if d.name == SWITCH)
    assert dvs.summary.productInfo.version.startswith("7.0")
    assert sorted(h.name for h in dvs.summary.hostMember) == ["DC0_C0_H0", "DC0_C0_H1"]
    pg = next(p for p in dvs.portgroup if p.name == PORTGROUP)
    for host in dvs.summary.hostMember:
        assert host.configManager.advancedOption.QueryOptions("Net.PVRDMAVmknic")[0].value == "vmk1"
        assert next(r for r in host.configManager.firewallSystem.firewallInfo.ruleset if r.key == "pvrdma").enabled
    vms = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True).view
    for vm in (v for v in vms if v.name in VMS):
        nics = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualVmxnet3Vrdma)]
        assert len(nics) == 1
        port = nics[0].backing.port  # type: ignore[union-attr]
        assert (port.switchUuid, port.portgroupKey) == (dvs.uuid, pg.key)
        assert vm.config.memoryReservationLockedToMax is True


def test_second_run_changes_nothing(configured: tuple[VCenterDriver, Changes, dict[str, Any]]) -> None:
    driver, _, _ = configured
    undo_before = driver.pending_undo
    again = driver.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
    assert again.nothing_changed, again.summary()
    assert again.summary() == "nothing changed"
    assert driver.pending_undo == undo_before


def test_simulator_gaps_are_detected_by_the_servers_faults(
    configured: tuple[VCenterDriver, Changes, dict[str, Any]],
) -> None:
    """vcsim 0.24.2's gaps, each found by its fault or read-back, never assumed."""
    _, changes, _ = configured
    steps = {u.step.split(" on ")[0] for u in changes.unsupported}
    assert "create vmk1" in steps  # AddVirtualNic: MethodNotFound
    assert "assign uplink vmnic1" in steps  # ReconfigureDvs host edit: NotSupported
    assert "read the RDMA device paired with vmnic1" in steps  # rdmaDevice empty
    assert any("AddVirtualNic" in u.reason and "MethodNotFound" in u.reason for u in changes.unsupported)


@pytest.mark.parametrize(
    ("step", "what"),
    [
        ("create vmk1", "vmk1 on the DV port group"),
        ("assign uplink", "the RDMA pnic as the switch's only uplink"),
        ("read the RDMA device", "host.config.network.rdmaDevice active and paired with the uplink"),
        ("reserve all guest memory", "memoryAllocation.reservation == memoryMB"),
        ("set MTU", "the vDS maxMtu"),
    ],
)
def test_real_vcenter_only_steps(
    configured: tuple[VCenterDriver, Changes, dict[str, Any]], step: str, what: str
) -> None:
    """Each of these runs on a real vCenter; on vcsim it skips with the server's own reason."""
    _, changes, _ = configured
    reason = unsupported_reason(changes, step)
    if reason:
        pytest.skip(f"{what}: not implemented by this server ({reason})")
    pytest.fail(f"{what}: the server did it, but this self-test only knows vcsim; extend it")


def test_firewall_state_per_host(sim: vcsim.VcsimInstance, configured: Any) -> None:
    si = SmartConnect(
        host=sim.address,
        port=sim.port,
        user=sim.user,
        pwd=sim.password,
        sslContext=ssl.create_default_context(cafile=str(sim.cert_path)),
    )
    try:
        content = si.RetrieveContent()
        hosts = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True).view

        def enabled(host: Any, key: str) -> bool:
            return bool(next(r for r in host.configManager.firewallSystem.firewallInfo.ruleset if r.key == key).enabled)

        key = "syslog"  # a ruleset the bring-up leaves alone
        fw0 = hosts[0].configManager.firewallSystem
        was = enabled(hosts[0], key), enabled(hosts[1], key)
        (fw0.DisableRuleset if was[0] else fw0.EnableRuleset)(id=key)
        shared = enabled(hosts[1], key) != was[1]
        (fw0.EnableRuleset if was[0] else fw0.DisableRuleset)(id=key)
        assert (enabled(hosts[0], key), enabled(hosts[1], key)) == was
        if shared:
            pytest.skip("vcsim keeps one firewall ruleset table for all hosts: per-host state cannot be checked here")
    finally:
        Disconnect(si)


def test_teardown_after_failure_in_the_middle_restores_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    with vcsim.running_vcsim() as fresh:
        before = snapshot(fresh)
        driver = driver_for(fresh)
        driver.connect()
        real_ensure_vm = VCenterDriver._ensure_vm
        calls = []

        def fail_on_second_vm(self: VCenterDriver, vm: Any, vm_name: str, dvs: Any, pg: Any) -> None:
            calls.append(vm_name)
            if len(calls) == 2:
                raise DriverError(f"injected failure at VM {vm_name}")
            real_ensure_vm(self, vm, vm_name, dvs, pg)

        monkeypatch.setattr(VCenterDriver, "_ensure_vm", fail_on_second_vm)
        with pytest.raises(DriverError, match="injected failure"):
            driver.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
        assert snapshot(fresh) != before, "the failure must come after real changes"
        driver.teardown()
        assert driver.pending_undo == []
        assert snapshot(fresh) == before
        driver.close()


def test_missing_vm_fails_before_touching_anything(sim: vcsim.VcsimInstance) -> None:
    before = snapshot(sim)
    driver = driver_for(sim)
    driver.connect()
    try:
        with pytest.raises(DriverError) as err:
            driver.configure_pvrdma("DSwitch_other", PORTGROUP, MTU, HOSTS, ["no-such-vm"])
        assert "no VM 'no-such-vm'" in str(err.value) and "\n" not in str(err.value)
        assert driver.pending_undo == []
        assert snapshot(sim) == before
    finally:
        driver.close()


def test_wrong_password_is_one_clear_line(sim: vcsim.VcsimInstance) -> None:
    driver = VCenterDriver(sim.address, sim.port, sim.user, "wrong", ca_file=str(sim.cert_path))
    with pytest.raises(LabError) as err:
        driver.connect()
    text = str(err.value)
    assert "\n" not in text and "rejected" in text and "InvalidLogin" in text and sim.user in text


def test_password_is_not_on_the_simulators_command_line() -> None:
    """Every user can read /proc/<pid>/cmdline: the password is not there, and the simulator
    still accepts that password and nothing else."""
    password = "pw-" + secrets.token_hex(8)
    with vcsim.running_vcsim(password=password) as sim:
        argv = Path(f"/proc/{sim.pid}/cmdline").read_bytes().split(b"\0")
        assert any(arg.startswith(b"-username=") for arg in argv), argv  # the right process
        assert not any(password.encode() in arg for arg in argv), argv
        with pytest.raises(LabError):
            VCenterDriver(sim.address, sim.port, sim.user, "", ca_file=str(sim.cert_path)).connect()
        good = VCenterDriver(sim.address, sim.port, sim.user, password, ca_file=str(sim.cert_path))
        good.connect()
        good.close()


def test_untrusted_certificate_is_one_clear_line(sim: vcsim.VcsimInstance) -> None:
    """TLS is verified by default, also on 127.0.0.1 (where pyvmomi would skip it on its own)."""
    driver = VCenterDriver(sim.address, sim.port, sim.user, sim.password)
    with pytest.raises(LabError) as err:
        driver.connect()
    assert "TLS certificate not trusted" in str(err.value) and "\n" not in str(err.value)


def test_pinned_thumbprint_and_explicit_opt_out_connect(sim: vcsim.VcsimInstance) -> None:
    for kwargs in ({"thumbprint": sim.thumbprint}, {"verify_tls": False}):
        driver = VCenterDriver(sim.address, sim.port, sim.user, sim.password, **kwargs)
        driver.connect()
        assert driver.inventory()["vcenter"]["api_version"] == vcsim.API_VERSION
        driver.close()
    wrong = VCenterDriver(sim.address, sim.port, sim.user, sim.password, thumbprint="00" * 20)
    with pytest.raises(LabError) as err:
        wrong.connect()
    assert "\n" not in str(err.value)


def test_expired_session_reconnects(sim: vcsim.VcsimInstance) -> None:
    driver = driver_for(sim)
    driver.connect()
    try:
        # Behind the driver's back: its session is gone, the next call gets NotAuthenticated.
        driver.service_instance.content.sessionManager.Logout()
        inventory = driver.inventory()
        assert driver.relogins == 1
        assert [h["name"] for h in inventory["hosts"]] == ["DC0_C0_H0", "DC0_C0_H1"]
    finally:
        driver.close()


def test_unreachable_vcenter_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        driver = VCenterDriver("127.0.0.1", port, "u", "p", http_timeout=5)
        with pytest.raises(LabError) as err:
            driver.connect()
    text = str(err.value)
    assert "\n" not in text and "unreachable" in text and str(port) in text


def test_inventory_names_builds(configured: tuple[VCenterDriver, Changes, dict[str, Any]]) -> None:
    driver, _, _ = configured
    inventory = driver.inventory()
    assert inventory["vcenter"]["build"] and inventory["vcenter"]["product"].startswith("VMware vCenter Server")
    assert all(h["build"] and h["product"].startswith("VMware ESXi") for h in inventory["hosts"])


def test_idle_expired_session_reconnects_mid_configuration() -> None:
    """A session that really times out (vcsim -idle 1s) is renewed once, and the run carries on."""
    with vcsim.running_vcsim(idle_timeout=1) as short:
        before = snapshot(short)
        driver = driver_for(short)
        driver.connect()
        try:
            time.sleep(2.5)  # two idle periods: the session is gone
            changes = driver.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
            assert driver.relogins >= 1 and not changes.nothing_changed
            driver.teardown()
            assert snapshot(short) == before
        finally:
            driver.close()


def test_a_live_runs_objects_are_refused_and_a_killed_runs_are_restored_by_the_next_bring_up() -> None:
    """Everything a run creates or changes carries its mark (owner in a created switch's or port group's
    description; owner and undo steps in the fabqual.run attribute of a changed host or VM). Another run
    refuses objects a live run marked; the next bring-up after a killed run first restores all it left."""
    dead = dead_owner()
    me = RunOwner.this_process()
    live = RunOwner("another-live-run", me.host, me.pid, me.pid_start, me.started, me.command)
    assert live.alive() is True
    with vcsim.running_vcsim() as fresh:
        before = snapshot(fresh)
        holder = driver_for(fresh, owner=live)
        holder.connect()
        holder.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
        during = snapshot(fresh)
        assert all(live.run_id in during[name]["mark"] for name in ("DC0_C0_H0", "DC0_C0_H1", *VMS)), during
        other = driver_for(fresh, owner=me)
        other.connect()
        with pytest.raises(DriverError, match=r"run another-live-run .* which is still running"):
            other.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
        assert snapshot(fresh) == during
        other.close()
        holder.teardown()
        holder.close()
        assert snapshot(fresh) == before

        killed = driver_for(fresh, owner=dead)
        killed.connect()
        killed.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
        killed.close()  # no teardown: the process was killed
        assert snapshot(fresh) != before
        after = driver_for(fresh, owner=me)
        after.connect()
        changes = after.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
        assert f"destroyed switch {SWITCH} of {dead.run_id}" in changes.swept, changes.swept
        assert any(line.startswith(f"restored VM {VMS[0]}: 1 step(s)") for line in changes.swept), changes.swept
        after.teardown()
        after.close()
        assert snapshot(fresh) == before


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the driver catches it, no teardown runs."""


MUTATING_CALLS = (
    "AddCustomFieldDef",
    "SetField",
    "set",
    "EnableRuleset",
    "AddVirtualNic",
    "UpdateVirtualNic",
    "migrate",
)


def kill_after(driver: VCenterDriver, step: int) -> list[str]:
    """Make ``driver`` raise :class:`Killed` right after its ``step``-th change to the server (a finished
    task or a changing call); returns the names of the changes made, as they happen."""
    session, done = driver.session, []
    real_call, real_wait = session.call, session.wait
    in_task = [False]

    def changed(what: str) -> None:
        done.append(what)
        if len(done) == step:
            raise Killed(what)

    def call(target: str, what: str, fn: Any) -> Any:
        result = real_call(target, what, fn)
        if not in_task[0] and what.split()[0] in MUTATING_CALLS:
            changed(f"{target}: {what}")
        return result

    def wait(target: str, what: str, start: Any) -> Any:
        in_task[0] = True
        try:
            result = real_wait(target, what, start)
        finally:
            in_task[0] = False
        changed(f"{target}: {what}")
        return result

    session.call = call  # type: ignore[method-assign]
    session.wait = wait  # type: ignore[method-assign]
    return done


def test_a_bring_up_killed_after_any_step_is_restored_by_a_sweep() -> None:
    """A pvrdma bring-up killed after each of its changes in turn (mark written, object made or changed):
    a later process's sweep puts vcsim's inventory back as it was, marks included, and never touches an
    unmarked switch that was there before (someone else's)."""
    dead = dead_owner()
    with vcsim.running_vcsim() as fresh:
        theirs = driver_for(fresh)
        theirs.connect()
        dc = theirs._datacenter()
        theirs.session.wait("switch Theirs", "CreateDVS_Task", lambda: dc.networkFolder.CreateDVS_Task(
            specs.dvs_create_spec("Theirs", "7.0.0", 1500)))  # fmt: skip
        theirs.close()
        before = snapshot(fresh)
        assert "Theirs" in before["switches"]
        step = 0
        while True:  # until a bring-up gets through: the last kill point was its last change
            step += 1
            killed = driver_for(fresh, owner=dead)
            killed.connect()
            changes = kill_after(killed, step)
            try:
                killed.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
            except Killed:
                killed.close()
            else:
                del killed.session.call, killed.session.wait  # disarmed: its own teardown runs
                killed.teardown()
                killed.close()
                assert snapshot(fresh) == before
                break
            sweeper = driver_for(fresh)
            sweeper.connect()
            swept = sweeper.sweep()
            sweeper.close()
            assert snapshot(fresh) == before, f"killed after {changes[-1]!r}; the sweep: {swept}"
        assert step > 20, f"only {step - 1} changes: {changes}"


def test_fabqual_clean_sweeps_a_vcenter_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fabqual clean` restores what a killed run marked in a (real, here vcsim-played) vCenter: a dry run
    names it and changes nothing, the real one restores the inventory."""
    from fabqual.cli.clean import sweep_vcenter
    from fabqual.topology.model import VCenter

    with vcsim.running_vcsim() as fresh:
        before = snapshot(fresh)
        killed = driver_for(fresh, owner=dead_owner())
        killed.connect()
        killed.configure_pvrdma(SWITCH, PORTGROUP, MTU, HOSTS, VMS)
        killed.close()
        left = snapshot(fresh)
        monkeypatch.setenv("FABQUAL_TEST_VC_PW", fresh.password)
        vc = VCenter(
            name="vc1",
            address=fresh.address,
            port=fresh.port,
            user=fresh.user,
            password_env="FABQUAL_TEST_VC_PW",
            ca_file=str(fresh.cert_path),
            datacenter="DC0",
        )
        dry = sweep_vcenter(vc, dry_run=True)
        assert any(line.startswith(f"restored VM {VMS[0]}: would undo 1 step(s)") for line in dry), dry
        assert f"destroyed switch {SWITCH} of {killed.owner.run_id} (dry run)" in dry, dry
        assert snapshot(fresh) == left
        swept = sweep_vcenter(vc)
        assert f"destroyed switch {SWITCH} of {killed.owner.run_id}" in swept, swept
        assert snapshot(fresh) == before
        assert sweep_vcenter(vc) == ["nothing left by earlier runs"]
