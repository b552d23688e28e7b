"""vCenter driver for the PVRDMA link (pyvmomi).

Brings up what the seeds click together in the vSphere client: a 7.0 vDS with a
port group, both hosts with their RDMA uplink, the vmknic on the port group,
``Net.PVRDMAVmknic``, the ``pvrdma`` firewall ruleset, and on each VM "Reserve
all guest memory" plus a PVRDMA adapter on the port group.

Every step reads first and changes only what differs, reads back after a change,
and records how to undo it in a journal; :meth:`VCenterDriver.teardown` replays
the journal in reverse, also after a failure half-way. Before each change the
object gets fabqual's mark with that undo as data (:mod:`fabqual.vsphere.marks`),
so the next bring-up's sweep (:mod:`fabqual.vsphere.left`) restores what a killed
run left; a live run's marked objects are refused. Steps a server does not
implement (VMware's simulator lacks several) raise, unless the driver was told it
talks to a simulator (``tolerate_unimplemented``): then they are listed in
:attr:`Changes.unsupported` with the server's own fault as the reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from fabqual.drivers import rundir
from fabqual.drivers.rundir import RunOwner
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import log_step
from fabqual.vsphere import left, specs
from fabqual.vsphere.marks import Mark, Marks, Step, description_mark, description_owner, to_xml
from fabqual.vsphere.session import Unimplemented, VCenterSession, moid

log = logging.getLogger("fabqual.vsphere")

HostPlan = tuple[str, str, str, str]  # (host name, uplink pnic, vmknic, vmknic address "a.b.c.d/nn")


@dataclass(frozen=True)
class Change:
    target: str  # e.g. "host DC0_C0_H0", "switch DSwitch_PVRDMA"
    action: str


@dataclass(frozen=True)
class Unsupported:
    target: str
    step: str
    reason: str

    def __str__(self) -> str:
        return f"{self.target}: {self.step}: {self.reason}"


@dataclass
class Changes:
    """What one ``configure_pvrdma`` run changed, and which steps the server could not do."""

    changed: list[Change] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)  # what killed runs had left, restored before the bring-up

    @property
    def nothing_changed(self) -> bool:
        return not self.changed

    def summary(self) -> str:
        if not self.changed:
            return "nothing changed"
        return f"{len(self.changed)} change(s): " + "; ".join(f"{c.target}: {c.action}" for c in self.changed)


class VCenterDriver:
    """The PVRDMA configuration of one vCenter (or vcsim), over its :class:`VCenterSession`."""

    def __init__(
        self,
        address: str,
        port: int = 443,
        user: str = "administrator@vsphere.local",
        password: str = "",
        *,
        verify_tls: bool = True,
        ca_file: str | None = None,
        thumbprint: str | None = None,
        datacenter: str | None = None,
        dvs_version: str | None = None,
        task_timeout: float = 300.0,
        http_timeout: float = 60.0,
        tolerate_unimplemented: bool = False,
        owner: RunOwner | None = None,
    ) -> None:
        self.owner = owner or rundir.current().owner  # written on what this run creates: its mark
        self.session = VCenterSession(
            address,
            port,
            user,
            password,
            verify_tls=verify_tls,
            ca_file=ca_file,
            thumbprint=thumbprint,
            task_timeout=task_timeout,
            http_timeout=http_timeout,
        )
        self.address = address
        self.port = port
        self.datacenter_name = datacenter
        self.dvs_version = dvs_version  # None: the newest 7.0.x the vCenter offers
        self.tolerate_unimplemented = tolerate_unimplemented
        self.name = self.session.name
        self._journal: list[tuple[str, Callable[[], None]]] = []
        self._changes = Changes()
        self.marks = Marks(self.session)
        self._marked: dict[str, Mark] = {}  # moid -> this run's mark on that object, as last written
        self._clearing: dict[str, tuple[str, Callable[[], None]]] = {}  # moid -> its journal entry clearing it

    # -- the session ---------------------------------------------------------------------

    def connect(self) -> None:
        """Log in (see :meth:`VCenterSession.connect` for how TLS is trusted)."""
        self.session.connect()

    def close(self) -> None:
        self.session.close()

    @property
    def service_instance(self) -> Any:
        return self.session.service_instance

    @property
    def relogins(self) -> int:
        return self.session.relogins

    # -- journal ---------------------------------------------------------------------------

    def _record(self, target: str, action: str, undo_what: str, undo: Callable[[], None]) -> None:
        self._changes.changed.append(Change(target, action))
        self._journal.append((f"{target}: {undo_what}", undo))
        log_step(self.name, f"{target}: {action}")

    def _unsupported(self, target: str, step: str, reason: str) -> None:
        if not self.tolerate_unimplemented:
            raise DriverError(f"{self.name}: {target}: {step}: {reason}")
        self._changes.unsupported.append(Unsupported(target, step, reason))
        log.info("%s: %s: %s not possible here: %s", self.name, target, step, reason)

    @contextlib.contextmanager
    def _ahead(self, entity: Any, target: str, step: Step) -> Iterator[Step]:
        """Write ``step`` (the undo of the change in the ``with`` body) into the object's mark first: a
        run killed during the change leaves it for the next run's sweep. A change that fails drops it."""
        self._note(entity, target, step)
        try:
            yield step
        except (DriverError, LabError):
            self._drop(entity, target, step)
            raise

    def _note(self, entity: Any, target: str, step: Step) -> Step:
        """Add ``step`` to the object's mark (made with this run as owner on first use)."""
        key = moid(entity)
        mark = self._marked.get(key)
        if mark is None:
            mark = self._marked[key] = Mark(self.owner)
            # Recorded before the change's own undo, so it runs after it: the mark goes last.
            self._clearing[key] = (f"{target}: clear fabqual's mark", lambda: self._clear_mark(entity, target))
            self._journal.append(self._clearing[key])
        mark.steps.append(step)
        self.marks.write(entity, target, mark)
        return step

    def _drop(self, entity: Any, target: str, step: Step) -> None:
        """Take a step off the mark: the change did not happen (or is undone)."""
        key = moid(entity)
        mark = self._marked.get(key)
        if mark is None or step not in mark.steps:
            return
        mark.steps.remove(step)
        if mark.steps:
            self.marks.write(entity, target, mark)
            return
        self.marks.write(entity, target, None)  # nothing of this run's left on the object
        del self._marked[key]
        clearing = self._clearing.pop(key)
        if clearing in self._journal:
            self._journal.remove(clearing)

    def _undo_marked(self, entity: Any, target: str, step: Step) -> None:
        """The run's own undo of a marked change: the same step a sweep would replay, then off the mark."""
        with contextlib.suppress(left.Gone):
            left.undo_step(self.session, entity, target, step)
        self._drop(entity, target, step)

    def _clear_mark(self, entity: Any, target: str) -> None:
        mark = self._marked.get(moid(entity))
        if mark is not None and mark.steps:
            raise DriverError(f"{self.name}: {target}: {len(mark.steps)} marked change(s) not undone; mark kept")
        self._marked.pop(moid(entity), None)
        self._clearing.pop(moid(entity), None)
        self.marks.write(entity, target, None)

    def sweep(self, in_plan: set[str] | None = None, *, dry_run: bool = False, force: bool = False) -> list[str]:
        """Restore what killed runs left in the datacenter (their marks name a dead owner); one line each.
        ``force`` also sweeps runs of another controller host; ``dry_run`` only says what it would do."""
        result = left.sweep(
            self.session, self.marks, self._datacenter(), self.owner, in_plan or set(), dry_run=dry_run, force=force
        )
        for line in result.lines():
            log_step(self.name, f"sweep: {line}")
        return result.lines()

    def teardown(self) -> None:
        """Undo every recorded change in reverse order; keep going past failures, report them at the end."""
        failures: list[str] = []
        while self._journal:
            what, undo = self._journal.pop()
            log_step(self.name, f"undo {what}")
            try:
                undo()
            except (DriverError, LabError) as exc:
                failures.append(f"{what}: {exc}")
        if failures:
            raise DriverError(
                f"{self.name}: teardown could not undo {len(failures)} change(s): " + " | ".join(failures)
            )

    @property
    def pending_undo(self) -> list[str]:
        return [what for what, _ in self._journal]

    def _datacenter(self) -> Any:
        dcs = self.session.view(self.session.content.rootFolder, vim.Datacenter)
        names = [str(self.session.call("datacenter", "read name", lambda d=d: d.name)) for d in dcs]  # type: ignore[misc]
        if self.datacenter_name is None:
            if len(dcs) != 1:
                raise DriverError(f"{self.name}: {len(dcs)} datacenters ({', '.join(names)}); name one in the topology")
            return dcs[0]
        for dc, name in zip(dcs, names, strict=True):
            if name == self.datacenter_name:
                return dc
        raise DriverError(f"{self.name}: no datacenter {self.datacenter_name!r} (has: {', '.join(names) or 'none'})")

    def _by_name(self, root: Any, kind: type, name: str, what: str) -> Any:
        objs = self.session.view(root, kind)
        names = [str(self.session.call(what, "read name", lambda o=o: o.name)) for o in objs]  # type: ignore[misc]
        for obj, n in zip(objs, names, strict=True):
            if n == name:
                return obj
        raise DriverError(f"{self.name}: no {what} {name!r} in the datacenter (has: {', '.join(sorted(names))})")

    # -- the bring-up ----------------------------------------------------------------------

    def configure_pvrdma(
        self, switch: str, portgroup: str, mtu: int, hosts: Sequence[HostPlan], vms: Sequence[str]
    ) -> Changes:
        """Make the vCenter match the PVRDMA recipe; returns what changed (``nothing changed`` on a rerun)."""
        self._changes = Changes()
        dc = self._datacenter()
        # Resolve every named object first: a typo fails before anything is touched.
        host_objs = [(self._by_name(dc.hostFolder, vim.HostSystem, plan[0], "host"), plan) for plan in hosts]
        vm_objs = [(self._by_name(dc.vmFolder, vim.VirtualMachine, name, "VM"), name) for name in vms]
        in_plan = {moid(o) for o, _ in host_objs + vm_objs} | {
            f"switch {switch}",
            f"port group {portgroup} on {switch}",
        }
        self._changes.swept = self.sweep(in_plan)
        dvs = self._ensure_switch(dc, switch, mtu)
        pg = self._ensure_portgroup(dvs, switch, portgroup)
        for host, (host_name, uplink, _vmk, _ip) in host_objs:
            self._ensure_member(dvs, switch, host, host_name, uplink)
        for host, (host_name, uplink, vmk, ip) in host_objs:
            device = self._ensure_vmknic(dvs, pg, host, host_name, vmk, ip, mtu, uplink)
            self._ensure_option(host, host_name, device)
            self._ensure_firewall(host, host_name)
            self._check_rdma_device(host, host_name, uplink)
        for vm, vm_name in vm_objs:
            self._ensure_vm(vm, vm_name, dvs, pg)
        log_step(self.name, f"PVRDMA configuration: {self._changes.summary()}")
        return self._changes

    def _newest_dvs_version(self) -> str:
        if self.dvs_version:
            return self.dvs_version
        try:
            offered = self.session.call(
                self.name,
                "QueryAvailableDvsSpec",
                lambda: self.session.content.dvSwitchManager.QueryAvailableDvsSpec(recommended=True),
            )
        except Unimplemented as exc:
            self._unsupported("DVS manager", "list the vDS versions offered (using 7.0.0)", exc.reason)
            return "7.0.0"
        versions = sorted(
            (s.version for s in offered if s.version.startswith("7.0")), key=lambda v: [int(x) for x in v.split(".")]
        )
        if not versions:
            raise DriverError(f"{self.name}: offers no 7.0 vDS (offers: {[s.version for s in offered]})")
        return str(versions[-1])

    def _ensure_switch(self, dc: Any, switch: str, mtu: int) -> Any:
        target = f"switch {switch}"
        found = [d for d in self.session.view(dc.networkFolder, vim.DistributedVirtualSwitch) if d.name == switch]
        if found:
            dvs = found[0]
            self._adopt_if_left(dvs, target)
        else:
            version = self._newest_dvs_version()
            mark = description_mark(self.owner)
            dvs = self.session.wait(
                target,
                "CreateDVS_Task",
                lambda: dc.networkFolder.CreateDVS_Task(specs.dvs_create_spec(switch, version, mtu, mark)),
            )
            self._record(
                target,
                f"created (vDS {version}, MTU {mtu})",
                "destroy",
                lambda: left.destroy_switch(self.session, dvs, target),
            )
        version = self.session.call(target, "read version", lambda: dvs.summary.productInfo.version)
        if not str(version).startswith("7.0"):
            raise DriverError(
                f"{self.name}: {target} is vDS {version}; PVRDMA here needs a 7.0 vDS: upgrade it or pick another name"
            )
        current = self.session.call(target, "read maxMtu", lambda: dvs.config.maxMtu)
        if current != mtu:
            # A switch this run made goes whole at teardown; an existing one is marked with its MTU first.
            ahead: contextlib.AbstractContextManager[Step] = (
                self._ahead(dvs, target, {"op": "mtu", "was": current}) if found else contextlib.nullcontext({})
            )
            with ahead as step:
                self.session.wait(
                    target,
                    f"set MTU {mtu}",
                    lambda: dvs.ReconfigureDvs_Task(specs.dvs_mtu_spec(dvs.config.configVersion, mtu)),
                )
            after = self.session.call(target, "read maxMtu", lambda: dvs.config.maxMtu)
            if after != mtu:
                self._drop(dvs, target, step)
                self._unsupported(target, f"set MTU {mtu}", f"server kept maxMtu={after} after ReconfigureDvs_Task")
            elif found:
                self._record(
                    target, f"MTU {current} -> {mtu}", f"MTU back to {current}", self._undoer(dvs, target, step)
                )
        return dvs

    def _undoer(self, entity: Any, target: str, step: Step) -> Callable[[], None]:
        return lambda: self._undo_marked(entity, target, step)

    def _adopt_if_left(self, dvs: Any, target: str) -> None:
        """A switch carrying another run's mark: a live run's is refused, another controller's is used and
        left to it, a dead run's (the sweep removes those first) is taken over; an unmarked one is never removed."""
        left_by = description_owner(self.session.call(target, "read description", lambda: dvs.config.description))
        if left_by is None or left_by.run_id == self.owner.run_id:
            return
        alive = left_by.alive()
        if alive:
            raise DriverError(f"{self.name}: {target} belongs to {left_by.describe()}, which is still running")
        if alive is None:
            log_step(self.name, f"{target}: made by {left_by.describe()} from another controller; left to it")
            return
        self._record(
            target,
            f"left by {left_by.describe()}, killed: taken over",
            "destroy",
            lambda: left.destroy_switch(self.session, dvs, target),
        )

    def _ensure_portgroup(self, dvs: Any, switch: str, portgroup: str) -> Any:
        target = f"port group {portgroup} on {switch}"

        def find() -> Any:
            return next(
                (p for p in self.session.call(target, "read", lambda: list(dvs.portgroup)) if p.name == portgroup), None
            )

        pg = find()
        if pg is None:
            spec = specs.portgroup_spec(portgroup, description_mark(self.owner))
            self.session.wait(target, "AddDVPortgroup_Task", lambda: dvs.AddDVPortgroup_Task([spec]))
            pg = find()
            if pg is None:
                raise DriverError(f"{self.name}: {target}: not there after AddDVPortgroup_Task succeeded")
            created = pg
            self._record(
                target, "created", "destroy", lambda: self.session.wait(target, "Destroy_Task", created.Destroy_Task)
            )
        return pg

    def _uplink_portgroup_key(self, dvs: Any, target: str) -> str | None:
        pgs = self.session.call(target, "read uplink port groups", lambda: list(dvs.config.uplinkPortgroup))
        return str(pgs[0].key) if pgs else None

    def _ensure_member(self, dvs: Any, switch: str, host: Any, host_name: str, uplink: str) -> None:
        target = f"host {host_name}"
        network = self.session.call(target, "read network config", lambda: host.config.network)
        pnics = [p.device for p in network.pnic]
        if uplink not in pnics:
            raise DriverError(
                f"{self.name}: {target} has no physical NIC {uplink!r} (has: {', '.join(pnics)}); fix its uplink"
            )
        on_vss = any(v.spec.bridge and uplink in list(v.spec.bridge.nicDevice or []) for v in network.vswitch)
        members = {moid(h) for h in self.session.call(switch, "read members", lambda: list(dvs.summary.hostMember))}
        uplink_key = self._uplink_portgroup_key(dvs, f"switch {switch}")
        if moid(host) not in members:
            # A pnic still on a standard switch moves later, together with its vmknic.
            backing = None if on_vss else uplink
            with self._ahead(host, target, {"op": "member_remove", "switch": dvs.uuid}) as step:
                self.session.wait(
                    target,
                    f"add to {switch}",
                    lambda: dvs.ReconfigureDvs_Task(
                        specs.host_member_spec(dvs.config.configVersion, "add", host, backing, uplink_key)
                    ),
                )
            self._record(
                target,
                f"added to {switch}" + (f" with uplink {uplink}" if backing else ""),
                f"remove from {switch}",
                self._undoer(host, target, step),
            )
        if on_vss:
            return
        current = self._proxy_pnics(host, target, dvs)
        if uplink in current:
            return
        previous = current[0] if current else None
        try:
            with self._ahead(host, target, {"op": "uplink", "switch": dvs.uuid, "previous": previous}) as step:
                self.session.wait(
                    target,
                    f"set uplink {uplink} on {switch}",
                    lambda: dvs.ReconfigureDvs_Task(
                        specs.host_member_spec(dvs.config.configVersion, "edit", host, uplink, uplink_key)
                    ),
                )
        except Unimplemented as exc:
            self._unsupported(target, f"assign uplink {uplink} on {switch}", exc.reason)
            return
        if uplink not in self._proxy_pnics(host, target, dvs):
            self._drop(host, target, step)
            self._unsupported(target, f"assign uplink {uplink} on {switch}", "host shows no proxy switch with it")
            return
        self._record(
            target,
            f"uplink {uplink} on {switch}",
            f"uplink back to {previous or 'none'}",
            self._undoer(host, target, step),
        )

    def _proxy_pnics(self, host: Any, target: str, dvs: Any) -> list[str]:
        uuid = self.session.call(target, "read switch uuid", lambda: dvs.uuid)
        proxies = self.session.call(target, "read proxy switches", lambda: list(host.config.network.proxySwitch))
        keyed = {
            p.key: p.device for p in self.session.call(target, "read pnics", lambda: list(host.config.network.pnic))
        }
        return [keyed.get(k, k) for p in proxies if p.dvsUuid == uuid for k in (p.pnic or [])]

    def _ensure_vmknic(
        self, dvs: Any, pg: Any, host: Any, host_name: str, device: str, address: str, mtu: int, uplink: str
    ) -> str:
        target = f"host {host_name}"
        uuid, key = dvs.uuid, pg.key
        ns = host.configManager.networkSystem
        want_ip = specs.ip_config(address)

        def vnic(name: str) -> Any:
            return next(
                (
                    v
                    for v in self.session.call(target, "read vmknics", lambda: host.config.network.vnic)
                    if v.device == name
                ),
                None,
            )

        current = vnic(device)
        if current is None:
            try:
                with self._ahead(host, target, {"op": "vmknic_remove", "device": device, "switch": uuid}) as step:
                    created = self.session.call(
                        target,
                        f"AddVirtualNic on {pg.name}",
                        lambda: ns.AddVirtualNic(portgroup="", nic=specs.vmknic_spec(uuid, key, address, mtu)),
                    )
            except Unimplemented as exc:
                self._unsupported(target, f"create {device} on {pg.name}", exc.reason)
                return device
            if created != device:  # the mark names the vmknic that is there
                self._drop(host, target, step)
                step = self._note(host, target, {"op": "vmknic_remove", "device": created, "switch": uuid})
            self._record(
                target,
                f"created {created} ({address}, MTU {mtu}) on {pg.name}",
                f"remove {created}",
                self._undoer(host, target, step),
            )
            if created != device:
                log.warning("%s: %s: ESXi named the new vmknic %s, not %s", self.name, target, created, device)
            self._verify_vmknic(vnic(created), target, uuid, key, want_ip, mtu)
            return str(created)
        port = current.spec.distributedVirtualPort
        on_pg = port is not None and port.switchUuid == uuid and port.portgroupKey == key
        ip_ok = current.spec.ip.ipAddress == want_ip.ipAddress and current.spec.ip.subnetMask == want_ip.subnetMask
        if on_pg and ip_ok and current.spec.mtu == mtu:
            return device
        old_pg = current.portgroup or ""
        restore = {"op": "vmknic_restore", "device": device, "portgroup": old_pg, "spec": to_xml(current.spec)}
        network = self.session.call(target, "read network config", lambda: host.config.network)
        vss = next(
            (v for v in network.vswitch if v.spec.bridge and uplink in list(v.spec.bridge.nicDevice or [])), None
        )
        if not on_pg and vss is not None:
            # The seeds' layout: vmknic and its pnic on a standard switch; move both in one call.
            vss_pg = next((p for p in network.portgroup if p.spec.name == old_pg), None)
            config = specs.vmknic_migration_config(
                device, uuid, key, uplink, self._uplink_portgroup_key(dvs, target), vss, vss_pg
            )
            with self._ahead(host, target, restore) as step:
                self.session.call(
                    target, f"migrate {device}+{uplink} to {pg.name}", lambda: ns.UpdateNetworkConfig(config, "modify")
                )
            self._record(
                target,
                f"migrated {device} and {uplink} from {vss.name} to {pg.name}",
                f"{device} back to {old_pg}",
                self._undoer(host, target, step),
            )
        else:
            try:
                with self._ahead(host, target, restore) as step:
                    self.session.call(
                        target,
                        f"UpdateVirtualNic {device}",
                        lambda: ns.UpdateVirtualNic(device=device, nic=specs.vmknic_spec(uuid, key, address, mtu)),
                    )
            except Unimplemented as exc:
                self._unsupported(target, f"move {device} to {pg.name}", exc.reason)
                return device
            self._record(
                target,
                f"{device} set to {address}, MTU {mtu} on {pg.name}",
                f"{device} back to its old settings",
                self._undoer(host, target, step),
            )
        self._verify_vmknic(vnic(device), target, uuid, key, want_ip, mtu)
        return device

    def _verify_vmknic(self, nic: Any, target: str, uuid: str, key: str, ip: Any, mtu: int) -> None:
        port = nic.spec.distributedVirtualPort if nic is not None else None
        if (
            nic is None
            or port is None
            or (port.switchUuid, port.portgroupKey) != (uuid, key)
            or nic.spec.ip.ipAddress != ip.ipAddress
            or nic.spec.mtu != mtu
        ):
            raise DriverError(f"{self.name}: {target}: vmknic read back wrong after the change: {nic and nic.spec}")

    def _ensure_option(self, host: Any, host_name: str, device: str) -> None:
        target = f"host {host_name}"
        om = host.configManager.advancedOption

        def read() -> str | None:
            try:
                return str(om.QueryOptions(specs.PVRDMA_OPTION)[0].value)
            except vim.fault.InvalidName:
                return None  # not set yet (vcsim); ESXi >= 6.5 always has it, default ""

        current = self.session.call(target, f"read {specs.PVRDMA_OPTION}", read)
        if current == device:
            return
        old = current or ""
        with self._ahead(host, target, {"op": "option", "was": old}) as step:
            self.session.call(
                target, f"set {specs.PVRDMA_OPTION}={device}", lambda: om.UpdateOptions(specs.advanced_option(device))
            )
        self._record(
            target,
            f"{specs.PVRDMA_OPTION} {current!r} -> {device!r}",
            f"{specs.PVRDMA_OPTION} back to {old!r}",
            self._undoer(host, target, step),
        )
        after = self.session.call(target, f"read {specs.PVRDMA_OPTION}", read)
        if after != device:
            raise DriverError(f"{self.name}: {target}: {specs.PVRDMA_OPTION} reads {after!r} after setting {device!r}")

    def _ensure_firewall(self, host: Any, host_name: str) -> None:
        target = f"host {host_name}"
        fw = host.configManager.firewallSystem

        def enabled() -> bool:
            rulesets = self.session.call(target, "read firewall", lambda: list(fw.firewallInfo.ruleset))
            found = next((r for r in rulesets if r.key == specs.PVRDMA_RULESET), None)
            if found is None:
                raise DriverError(
                    f"{self.name}: {target} has no firewall ruleset {specs.PVRDMA_RULESET!r}; it needs ESXi >= 6.5"
                )
            return bool(found.enabled)

        if enabled():
            return
        with self._ahead(host, target, {"op": "firewall_off"}) as step:
            self.session.call(target, "EnableRuleset pvrdma", lambda: fw.EnableRuleset(id=specs.PVRDMA_RULESET))
        self._record(
            target,
            "firewall ruleset pvrdma enabled",
            "disable firewall ruleset pvrdma",
            self._undoer(host, target, step),
        )
        if not enabled():
            raise DriverError(f"{self.name}: {target}: firewall ruleset pvrdma still disabled after EnableRuleset")

    def _check_rdma_device(self, host: Any, host_name: str, uplink: str) -> None:
        """Read-only: the host's RDMA device paired with the uplink must exist and be active."""
        target = f"host {host_name}"
        devices = self.session.call(target, "read rdmaDevice", lambda: list(host.config.network.rdmaDevice or []))
        paired = [
            d
            for d in devices
            if isinstance(d.backing, vim.host.RdmaDevice.PnicBacking) and str(d.backing.pairedUplink).endswith(uplink)
        ]
        if not devices:
            if self.tolerate_unimplemented:
                self._unsupported(
                    target, f"read the RDMA device paired with {uplink}", "host.config.network.rdmaDevice is empty"
                )
                return
            raise DriverError(
                f"{self.name}: {target} shows no RDMA device; install the qedrntv driver, set enable_roce=1 on qedentv "
                "and reboot the host"
            )
        if not paired:
            names = ", ".join(f"{d.device}" for d in devices)
            raise DriverError(f"{self.name}: {target}: no RDMA device is paired with {uplink} (has: {names})")
        state = paired[0].connectionInfo.state if paired[0].connectionInfo else "unknown"
        if state != "active":
            raise DriverError(
                f"{self.name}: {target}: RDMA device {paired[0].device} on {uplink} is {state}; "
                "check the cable and the switch port"
            )

    def _ensure_vm(self, vm: Any, vm_name: str, dvs: Any, pg: Any) -> None:
        target = f"VM {vm_name}"
        uuid, key = dvs.uuid, pg.key

        def read() -> tuple[Any, list[Any]]:
            config = self.session.call(target, "read config", lambda: vm.config)
            nics = [d for d in config.hardware.device if isinstance(d, vim.vm.device.VirtualVmxnet3Vrdma)]
            return config, nics

        def on_pg(nic: Any) -> bool:
            port = getattr(nic.backing, "port", None)
            return port is not None and port.switchUuid == uuid and port.portgroupKey == key

        config, nics = read()
        locked_before = bool(config.memoryReservationLockedToMax)
        add = edit = None
        old_backing = None
        if not nics:
            add = specs.pvrdma_nic(uuid, key, int(config.version.split("-")[1]))
        elif not on_pg(nics[0]):
            # Only one PVRDMA device per VM (VMware KB 328676): re-point the one there is.
            edit, old_backing = nics[0], nics[0].backing
            edit.backing = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=specs.dv_port(uuid, key)
            )
        if locked_before and add is None and edit is None:
            self._verify_vm(config, target, nics)
            return
        spec = specs.vm_pvrdma_spec(None if locked_before else True, add=add, edit=edit)
        keys_before = {d.key for d in config.hardware.device}
        undo = {
            "op": "vm_pvrdma",
            "switch": uuid,
            "keys_before": sorted(keys_before),
            "locked_before": locked_before,
            "edit_key": edit.key if edit is not None else None,
            "old_backing": to_xml(old_backing) if old_backing is not None else None,
        }
        with self._ahead(vm, target, undo) as step:
            self.session.wait(
                target, "ReconfigVM_Task (PVRDMA NIC, memory locked)", lambda: vm.ReconfigVM_Task(spec=spec)
            )
        actions = [a for a, done in (("PVRDMA NIC added", add), ("PVRDMA NIC moved", edit)) if done is not None]
        if not locked_before:
            actions.append("all guest memory reserved")
        self._record(
            target,
            ", ".join(actions) + f" on {pg.name}",
            "undo PVRDMA NIC and memory lock",
            self._undoer(vm, target, step),
        )
        config, nics = read()
        if not (nics and on_pg(nics[0]) and config.memoryReservationLockedToMax):
            raise DriverError(f"{self.name}: {target}: PVRDMA NIC/memory lock read back wrong after ReconfigVM_Task")
        added = next((d for d in nics if d.key not in keys_before), None) if add is not None else None
        if add is not None and added is None:
            raise DriverError(f"{self.name}: {target}: the new PVRDMA NIC is not in the VM's devices after reconfigure")
        self._verify_vm(config, target, nics)

    def _verify_vm(self, config: Any, target: str, nics: list[Any]) -> None:
        if len(nics) > 1:
            raise DriverError(f"{self.name}: {target} has {len(nics)} PVRDMA NICs; VMware allows one per VM")
        reserved, size = config.memoryAllocation.reservation, config.hardware.memoryMB
        if reserved != size:
            self._unsupported(
                target, "reserve all guest memory", f"memoryAllocation.reservation={reserved} MB, memory={size} MB"
            )

    # -- report ------------------------------------------------------------------------

    def inventory(self) -> dict[str, Any]:
        """vCenter and ESXi builds and the datacenter's hosts, for the qualification report."""
        about = self.session.call(self.name, "read about", lambda: self.session.content.about)
        dc = self._datacenter()
        hosts = []
        for host in self.session.view(dc.hostFolder, vim.HostSystem):
            product: Any = self.session.call("host", "read product", lambda h=host: h.config.product)  # type: ignore[misc]
            rdma: Any = self.session.call("host", "read rdma", lambda h=host: list(h.config.network.rdmaDevice or []))  # type: ignore[misc]
            hosts.append(
                {
                    "name": host.name,
                    "product": product.fullName,
                    "version": product.version,
                    "build": product.build,
                    "rdma_devices": [{"device": d.device, "driver": d.driver} for d in rdma],
                }
            )
        return {
            "vcenter": {
                "address": f"{self.address}:{self.port}",
                "product": about.fullName,
                "version": about.version,
                "build": about.build,
                "api_version": about.apiVersion,
            },
            "datacenter": dc.name,
            "hosts": sorted(hosts, key=lambda h: h["name"]),
        }
