"""What a killed run left in a vCenter: undoing a marked change, and the sweep that finds them.

Every undo step the PVRDMA bring-up writes into an object's mark
(:mod:`fabqual.vsphere.marks`) is undone here, by the run's own teardown and by a
later run's sweep alike. A step whose change never happened (the run was killed
between writing the mark and making the change) or was already undone finds
nothing to do and says so (:class:`Gone`); it never touches anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from fabqual.drivers.rundir import RunOwner
from fabqual.errors import DriverError
from fabqual.vsphere import specs
from fabqual.vsphere.marks import Mark, Marks, Step, description_owner, from_xml
from fabqual.vsphere.session import VCenterSession, moid


class Gone(DriverError):
    """The change a step undoes is not there (never made, or already undone)."""


def _switch(session: VCenterSession, uuid: str, target: str) -> Any:
    for dvs in session.view(session.content.rootFolder, vim.DistributedVirtualSwitch):
        if session.call(target, "read switch uuid", lambda d=dvs: d.uuid) == uuid:  # type: ignore[misc]
            return dvs
    raise Gone(f"{session.name}: {target}: the switch {uuid} is gone")


def destroy_switch(session: VCenterSession, dvs: Any, target: str) -> None:
    # Port groups other than the uplink one go first: a real vCenter removes them with the
    # switch anyway, and vcsim (which leaves its uplink group out of config.uplinkPortgroup)
    # would otherwise keep them, and crash when they are destroyed afterwards.
    uplinks = {moid(p) for p in session.call(target, "read uplink port groups", lambda: dvs.config.uplinkPortgroup)}
    for pg in session.call(target, "read port groups", lambda: list(dvs.portgroup)):
        if moid(pg) not in uplinks:
            session.wait(f"port group {pg.name}", "Destroy_Task", pg.Destroy_Task)
    session.wait(target, "Destroy_Task", dvs.Destroy_Task)


def _vrdma(session: VCenterSession, vm: Any, target: str) -> tuple[Any, list[Any]]:
    config = session.call(target, "read config", lambda: vm.config)
    return config, [d for d in config.hardware.device if isinstance(d, vim.vm.device.VirtualVmxnet3Vrdma)]


def _undo_vm(session: VCenterSession, vm: Any, target: str, step: Step) -> None:
    config, nics = _vrdma(session, vm, target)
    before = set(step["keys_before"])
    added = [
        d
        for d in nics
        if d.key not in before and getattr(getattr(d.backing, "port", None), "switchUuid", None) == step["switch"]
    ]
    edited = next((d for d in nics if d.key == step.get("edit_key")), None) if step.get("old_backing") else None
    if edited is not None:
        edited.backing = from_xml(step["old_backing"])
    unlock = not step["locked_before"] and bool(config.memoryReservationLockedToMax)
    if not added and edited is None and not unlock:
        raise Gone(f"{session.name}: {target}: no PVRDMA change of the run is there")
    spec = specs.vm_pvrdma_spec(False if unlock else None, edit=edited)
    spec.deviceChange = (spec.deviceChange or []) + [
        vim.vm.device.VirtualDeviceSpec(operation="remove", device=d) for d in added
    ]
    session.wait(target, "ReconfigVM_Task (undo PVRDMA)", lambda: vm.ReconfigVM_Task(spec=spec))


def _undo_vmknic(session: VCenterSession, host: Any, target: str, step: Step) -> None:
    device = step["device"]
    nic = next(
        (v for v in session.call(target, "read vmknics", lambda: host.config.network.vnic) if v.device == device), None
    )
    port = nic.spec.distributedVirtualPort if nic is not None else None
    if port is None or port.switchUuid != step["switch"]:
        raise Gone(f"{session.name}: {target}: no {device} on the run's switch")
    ns = host.configManager.networkSystem
    session.call(target, f"RemoveVirtualNic {device}", lambda: ns.RemoveVirtualNic(device=device))


def _undo_member(session: VCenterSession, host: Any, target: str, step: Step) -> None:
    dvs = _switch(session, step["switch"], target)
    members = {moid(h) for h in session.call(target, "read members", lambda: list(dvs.summary.hostMember))}
    if moid(host) not in members:
        raise Gone(f"{session.name}: {target}: not a member of switch {step['switch']}")
    session.wait(
        target,
        "remove from switch",
        lambda: dvs.ReconfigureDvs_Task(specs.host_member_spec(dvs.config.configVersion, "remove", host)),
    )


def _undo_uplink(session: VCenterSession, host: Any, target: str, step: Step) -> None:
    dvs = _switch(session, step["switch"], target)
    previous = step["previous"]
    proxies = session.call(target, "read proxy switches", lambda: list(host.config.network.proxySwitch or []))
    pnics = {p.key: p.device for p in session.call(target, "read pnics", lambda: list(host.config.network.pnic))}
    current = [pnics.get(k, k) for p in proxies if p.dvsUuid == step["switch"] for k in (p.pnic or [])]
    if current == ([previous] if previous else []):
        raise Gone(f"{session.name}: {target}: the uplink is as it was")
    uplinks = session.call(target, "read uplink port groups", lambda: list(dvs.config.uplinkPortgroup))
    key = str(uplinks[0].key) if uplinks and previous else None
    session.wait(
        target,
        "restore uplink",
        lambda: dvs.ReconfigureDvs_Task(specs.host_member_spec(dvs.config.configVersion, "edit", host, previous, key)),
    )


def undo_step(session: VCenterSession, entity: Any, target: str, step: Step) -> None:
    """Undo one marked change on ``entity`` (a host, a VM or a switch)."""
    op = step.get("op")
    undo: dict[str, Callable[[], None]] = {
        "option": lambda: session.call(
            target,
            f"reset {specs.PVRDMA_OPTION}",
            lambda: entity.configManager.advancedOption.UpdateOptions(specs.advanced_option(step["was"])),
        ),
        "firewall_off": lambda: session.call(
            target,
            "DisableRuleset pvrdma",
            lambda: entity.configManager.firewallSystem.DisableRuleset(id=specs.PVRDMA_RULESET),
        ),
        "vmknic_remove": lambda: _undo_vmknic(session, entity, target, step),
        "vmknic_restore": lambda: session.call(
            target,
            f"restore {step['device']}",
            lambda: entity.configManager.networkSystem.UpdateNetworkConfig(
                specs.vmknic_restore_config(step["device"], from_xml(step["spec"]), step["portgroup"]), "modify"
            ),
        ),
        "member_remove": lambda: _undo_member(session, entity, target, step),
        "uplink": lambda: _undo_uplink(session, entity, target, step),
        "vm_pvrdma": lambda: _undo_vm(session, entity, target, step),
        "mtu": lambda: session.wait(
            target,
            f"restore MTU {step['was']}",
            lambda: entity.ReconfigureDvs_Task(specs.dvs_mtu_spec(entity.config.configVersion, step["was"])),
        ),
    }
    if op not in undo:
        raise DriverError(f"{session.name}: {target}: unknown undo step {step!r} in fabqual's mark")
    undo[str(op)]()


@dataclass
class SweepResult:
    """What one sweep of a vCenter did."""

    restored: list[str] = field(default_factory=list)  # "host X: 3 step(s) of run R"
    destroyed: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # steps kept in their mark for the next sweep

    def lines(self) -> list[str]:
        return (
            [f"restored {r}" for r in self.restored]
            + [f"destroyed {d}" for d in self.destroyed]
            + [f"left alone {a}" for a in self.left_alone]
            + [f"could not undo {f}" for f in self.failed]
        )


def _dead(
    owner: RunOwner, me: RunOwner, target: str, in_plan: bool, result: SweepResult, name: str, force: bool
) -> bool:
    """Whether ``owner``'s marks are to be swept (``force``: also another controller's, which cannot be
    probed); a live run's on an object this run needs is refused."""
    if owner.run_id == me.run_id:
        return False
    alive = owner.alive()
    if alive is False or (alive is None and force):
        return True
    why = "which is still running" if alive else "from another controller host (cannot tell whether it runs)"
    if in_plan:
        raise DriverError(f"{name}: {target} is marked by {owner.describe()}, {why}; wait for it or stop it")
    result.left_alone.append(f"{target} ({owner.describe()}, {why})")
    return False


def sweep(
    session: VCenterSession,
    marks: Marks,
    datacenter: Any,
    me: RunOwner,
    in_plan: set[str],
    *,
    dry_run: bool = False,
    force: bool = False,
) -> SweepResult:
    """Restore every object in ``datacenter`` marked by a dead run: VMs, hosts, switch settings, then the
    port groups and switches such runs created. ``in_plan`` (managed object ids and switch names) are
    the objects this run needs: a live run's mark on one of them is refused. ``dry_run``: only say what
    would be done."""
    result = SweepResult()
    name = session.name
    for kind, label, root in (
        (vim.VirtualMachine, "VM", datacenter.vmFolder),
        (vim.HostSystem, "host", datacenter.hostFolder),
        (vim.dvs.VmwareDistributedVirtualSwitch, "switch", datacenter.networkFolder),
    ):
        if marks.key(kind, name, create=False) is None:
            continue  # no object of this kind was ever marked here
        for entity in session.view(root, kind):
            target = f"{label} {session.call(name, 'read name', lambda e=entity: e.name)}"  # type: ignore[misc]
            mark = marks.read(entity, target)
            if mark is None or not _dead(mark.owner, me, target, moid(entity) in in_plan, result, name, force):
                continue
            if dry_run:
                result.restored.append(f"{target}: would undo {len(mark.steps)} step(s) of {mark.owner.run_id}")
                continue
            gone, failed = 0, list[Step]()
            for step in reversed(mark.steps):
                try:
                    undo_step(session, entity, target, step)
                except Gone:
                    gone += 1
                except DriverError as error:
                    failed.insert(0, step)
                    result.failed.append(f"{target}: {error}")
            marks.write(entity, target, Mark(mark.owner, failed) if failed else None)  # failed ones: next sweep
            done = len(mark.steps) - gone - len(failed)
            result.restored.append(
                f"{target}: {done} step(s) of {mark.owner.run_id}" + (f", {gone} gone" if gone else "")
            )
    for dvs in session.view(datacenter.networkFolder, vim.DistributedVirtualSwitch):
        switch = f"switch {session.call(name, 'read name', lambda d=dvs: d.name)}"  # type: ignore[misc]
        owner = description_owner(session.call(switch, "read description", lambda d=dvs: d.config.description))  # type: ignore[misc]
        if owner is not None and _dead(owner, me, switch, switch in in_plan, result, name, force):
            if not dry_run:
                destroy_switch(session, dvs, switch)
            result.destroyed.append(f"{switch} of {owner.run_id}" + (" (dry run)" if dry_run else ""))
            continue
        for pg in session.call(switch, "read port groups", lambda d=dvs: list(d.portgroup)):  # type: ignore[misc]
            target = f"port group {pg.name} on {switch[len('switch ') :]}"
            owner = description_owner(session.call(target, "read description", lambda p=pg: p.config.description))  # type: ignore[misc]
            if owner is not None and _dead(owner, me, target, target in in_plan, result, name, force):
                if not dry_run:
                    session.wait(target, "Destroy_Task", pg.Destroy_Task)
                result.destroyed.append(f"{target} of {owner.run_id}" + (" (dry run)" if dry_run else ""))
    return result


__all__ = ["Gone", "Mark", "SweepResult", "destroy_switch", "sweep", "undo_step"]
