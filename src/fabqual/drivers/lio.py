"""LIO (the kernel SCSI target) through configfs: backstores, fabric targets, LUNs, ACLs.

Everything is created under ``/sys/kernel/config/target`` and journaled, so
teardown removes exactly that in reverse (ACL mapped LUN links, ACLs, LUN links,
LUNs, TPG, WWN, backstore). Backstores: ``rd_mcp`` (a ramdisk, for proving the
plumbing), ``iblock`` (a block device: the fcp link's scratch LUN) and ``user``
(TCMU: a userspace handler answers every command through ``/dev/uioN``).
Fabrics: ``tcm_fc`` (FCP over an FCoE port), ``tcm_qla2xxx`` (FCP on a QLogic
HBA port in target mode) and ``tcm_loop`` (a local SCSI host: target and
initiator in one node).

ORDER (docs/emulated-lab.md): on FCoE the target must be configured before the initiator's
controller is enabled, and ``tcm_fc`` must never be loaded on the initiator —
:meth:`Lio.fc_tpg` loads it, so call it only on the target node.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from fabqual.drivers.fcoe import colon_wwn
from fabqual.drivers.journal import Journal, exists, modprobe, sh, write
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name

ROOT = "/sys/kernel/config/target"
FABRIC_MODULES = {"fc": "tcm_fc", "qla2xxx": "tcm_qla2xxx", "loopback": "tcm_loop"}  # configfs dir → module


@dataclass(frozen=True)
class Backstore:
    """A storage object: ``core/<plugin>_<index>/<name>``."""

    plugin: str  # rd_mcp, user
    index: int
    name: str

    @property
    def path(self) -> str:
        return f"{ROOT}/core/{self.plugin}_{self.index}/{self.name}"


@dataclass(frozen=True)
class Tpg:
    """A target portal group of a fabric's target: ``<fabric>/<wwn>/tpgt_<tag>``."""

    fabric: str  # fc, qla2xxx, loopback
    wwn: str
    tag: int = 1

    @property
    def path(self) -> str:
        return f"{ROOT}/{self.fabric}/{self.wwn}/tpgt_{self.tag}"


def loop_wwn(seed: str) -> str:
    """A stable tcm_loop NAA WWN (``naa.5001405…``) for a name, so stale ones can be found."""
    digits = "".join(f"{ord(c):02x}" for c in seed)[-9:].rjust(9, "0")
    return f"naa.5001405{digits}"


class Lio:
    """One node's LIO, changed only through journaled steps."""

    def __init__(self, executor: Executor, journal: Journal) -> None:
        self.executor = executor
        self.journal = journal

    # --- primitives ------------------------------------------------------------------
    def _mkdir(self, path: str, what: str) -> None:
        log_step(self.executor.node, f"create {what}")
        with self.journal.ahead(self.executor, what, f"rmdir {shlex.quote(path)}"):
            sh(self.executor, f"mkdir {shlex.quote(path)}")

    def _link(self, source: str, link: str, what: str) -> None:
        log_step(self.executor.node, f"link {what}")
        with self.journal.ahead(self.executor, what, f"rm {shlex.quote(link)}"):
            sh(self.executor, f"ln -s {shlex.quote(source)} {shlex.quote(link)}")

    def prepare(self) -> None:
        modprobe(self.executor, "target_core_mod")
        if not exists(self.executor, ROOT):
            self.executor.run("mount -t configfs none /sys/kernel/config 2>/dev/null; true", timeout=30)
        if not exists(self.executor, f"{ROOT}/core"):
            raise LabError(f"{self.executor.node}: {ROOT}/core is missing after loading target_core_mod")

    # --- backstores ------------------------------------------------------------------
    def _free_index(self, plugin: str) -> int:
        names = sh(self.executor, f"ls {ROOT}/core").split()
        used = {int(m[1]) for n in names if (m := re.fullmatch(rf"{plugin}_(\d+)", n))}
        return next(i for i in range(0, 1 << 16) if i not in used)

    def remove_stale_backstore(self, name: str) -> None:
        """Remove backstores called ``name`` that an interrupted run left (their LUNs first)."""
        paths = sh(self.executor, f"ls -d {ROOT}/core/*/{shlex.quote(name)} 2>/dev/null; true").split()
        for path in paths:
            log_step(self.executor.node, f"remove stale backstore {path} left by an earlier run")
            hba = path.rsplit("/", 1)[0]
            self.executor.run(
                f"for l in {ROOT}/*/*/tpgt_*/lun/lun_*/*; do"
                f' [ -L "$l" ] && [ "$(readlink -f "$l")" = {shlex.quote(path)} ] && rm -f "$l"; done;'
                f" rmdir {shlex.quote(path)} {shlex.quote(hba)}",
                timeout=60,
                check=False,
            )
            if exists(self.executor, path):
                raise DriverError(f"{self.executor.node}: stale backstore {path} could not be removed; is it exported?")

    def _backstore(self, plugin: str, name: str) -> Backstore:
        self.remove_stale_backstore(name)
        store = Backstore(plugin, self._free_index(plugin), name)
        self._mkdir(store.path.rsplit("/", 1)[0], f"LIO {plugin} HBA {plugin}_{store.index}")
        self._mkdir(store.path, f"LIO backstore {plugin}_{store.index}/{name}")
        return store

    def _enable(self, store: Backstore) -> None:
        write(self.executor, f"{store.path}/enable", "1")

    def ramdisk(self, name: str, size_bytes: int) -> Backstore:
        """A ``rd_mcp`` ramdisk of ``size_bytes`` (whole 4 KiB pages)."""
        store = self._backstore("rd_mcp", name)
        write(self.executor, f"{store.path}/control", f"rd_pages={max(1, size_bytes // 4096)}")
        self._enable(store)
        return store

    def iblock(self, name: str, device: str, *, unit_serial: str, product: str) -> Backstore:
        """An ``iblock`` backstore on the block device ``device`` (one the caller proved scratch).

        The unit serial (VPD page 0x80) is fixed before the backstore is enabled:
        LIO derives the LUN's NAA WWN (VPD page 0x83) from it, so the initiator finds
        the LUN by a WWN known in advance. ``product`` is the INQUIRY product id.
        """
        modprobe(self.executor, "target_core_iblock")
        store = self._backstore("iblock", name)
        write(self.executor, f"{store.path}/control", f"udev_path={device}")
        write(self.executor, f"{store.path}/wwn/vpd_unit_serial", unit_serial)
        write(self.executor, f"{store.path}/wwn/product_id", product)
        self._enable(store)
        return store

    def user_backstore(
        self, name: str, size_bytes: int, handler: str, config: str, *, options: dict[str, str] | None = None
    ) -> tuple[Backstore, str]:
        """A TCMU backstore served by the userspace ``handler``; returns it and its ``/dev/uioN``.

        ``dev_config`` is ``<handler>/<config>``: the handler recognises its device by
        that prefix in the uio name (``tcm-user/<index>/<name>/<handler>/<config>``).
        """
        modprobe(self.executor, "target_core_user")
        store = self._backstore("user", name)
        control = {"dev_size": str(size_bytes), "dev_config": f"{handler}/{config}", **(options or {})}
        for key, value in control.items():
            write(self.executor, f"{store.path}/control", f"{key}={value}")
        self._enable(store)
        return store, self.uio_device(store)

    def uio_device(self, store: Backstore, *, timeout: float = 10.0) -> str:
        """The ``/dev/uioN`` the kernel made for a TCMU backstore."""
        prefix = f"tcm-user/{store.index}/{store.name}/"
        deadline = time.monotonic() + timeout
        while True:
            out = self.executor.run("grep -H . /sys/class/uio/*/name 2>/dev/null; true", timeout=30).stdout
            for line in out.splitlines():
                path, _, value = line.partition(":")
                if value.startswith(prefix):
                    return "/dev/" + plain_name(self.executor.node, "uio device", path.split("/")[4])
            if time.monotonic() > deadline:
                raise DriverError(f"{self.executor.node}: no /dev/uio* named {prefix}… after enabling {store.path}")
            time.sleep(0.2)

    # --- fabrics ---------------------------------------------------------------------
    def _fabric(self, fabric: str) -> None:
        modprobe(self.executor, FABRIC_MODULES[fabric])
        if not exists(self.executor, f"{ROOT}/{fabric}"):
            self._mkdir(f"{ROOT}/{fabric}", f"LIO fabric {fabric}")

    def remove_stale_tpg(self, fabric: str, wwn: str) -> None:
        """Remove a target ``wwn`` an interrupted run left: mapped LUNs, ACLs, LUNs, TPGs, WWN."""
        top = f"{ROOT}/{fabric}/{wwn}"
        if not exists(self.executor, top):
            return
        log_step(self.executor.node, f"remove stale LIO target {fabric}/{wwn} left by an earlier run")
        q = shlex.quote(top)
        self.executor.run(
            f"rm -f {q}/tpgt_*/acls/*/lun_*/*; rmdir {q}/tpgt_*/acls/*/lun_* {q}/tpgt_*/acls/* 2>/dev/null;"
            f" rm -f {q}/tpgt_*/lun/lun_*/*; rmdir {q}/tpgt_*/lun/lun_* 2>/dev/null;"
            f" rmdir {q}/tpgt_* {q}",
            timeout=60,
            check=False,
        )
        if exists(self.executor, top):
            raise DriverError(f"{self.executor.node}: stale LIO target {top} could not be removed")

    def fc_tpg(self, wwpn: str) -> Tpg:
        """A tcm_fc target on the local FC port ``wwpn`` (loads tcm_fc: target node only)."""
        self._fabric("fc")
        tpg = Tpg("fc", colon_wwn(wwpn))
        self.remove_stale_tpg("fc", tpg.wwn)
        self._mkdir(f"{ROOT}/fc/{tpg.wwn}", f"tcm_fc target {tpg.wwn}")
        self._mkdir(tpg.path, f"tcm_fc TPG {tpg.wwn}/tpgt_{tpg.tag}")
        return tpg

    def qla2xxx_tpg(self, wwpn: str, *, enable: bool = True) -> Tpg:
        """A tcm_qla2xxx target on the local QLogic port ``wwpn``, enabled unless ``enable`` is False.

        tcm_qla2xxx only registers the WWPN of a qla2xxx port in target mode (qla2xxx
        loaded with ``qlini_mode`` other than ``enabled``): for any other WWPN
        ``qlt_lport_register`` fails with ENODEV, which LIO's configfs hands to
        userspace as EINVAL on the WWN mkdir (the name itself is well formed here).
        """
        self._fabric("qla2xxx")
        tpg = Tpg("qla2xxx", colon_wwn(wwpn))
        self.remove_stale_tpg("qla2xxx", tpg.wwn)
        try:
            self._mkdir(f"{ROOT}/qla2xxx/{tpg.wwn}", f"tcm_qla2xxx target {tpg.wwn}")
        except DriverError as error:
            if not any(why in str(error) for why in ("Invalid argument", "No such device")):
                raise
            raise DriverError(
                f"{self.executor.node}: tcm_qla2xxx refused target {tpg.wwn}: no qla2xxx port with WWPN"
                f" {tpg.wwn} is in target mode here; load qla2xxx with qlini_mode=disabled (or dual) on"
                f" {self.executor.node} and check the WWPN against /sys/class/fc_host/*/port_name"
            ) from None
        self._mkdir(tpg.path, f"tcm_qla2xxx TPG {tpg.wwn}/tpgt_{tpg.tag}")
        if enable:
            self.enable_tpg(tpg)
        return tpg

    def enable_tpg(self, tpg: Tpg) -> None:
        """Let the fabric accept logins to the TPG; undone (disabled) before the TPG is removed."""
        write(self.executor, f"{tpg.path}/enable", "1")
        self.journal.record_command(
            self.executor,
            f"enabled {tpg.fabric} TPG {tpg.wwn}/tpgt_{tpg.tag}",
            f"echo 0 > {shlex.quote(tpg.path)}/enable",
        )

    def loop_tpg(self, wwn: str, nexus: str) -> Tpg:
        """A tcm_loop target: a local SCSI host whose initiator port is ``nexus``."""
        self._fabric("loopback")
        tpg = Tpg("loopback", wwn)
        self.remove_stale_tpg("loopback", wwn)
        self._mkdir(f"{ROOT}/loopback/{wwn}", f"tcm_loop target {wwn}")
        self._mkdir(tpg.path, f"tcm_loop TPG {wwn}/tpgt_{tpg.tag}")
        # The nexus is the local SCSI host (the initiator side). It is not undone on its own:
        # removing the TPG drops it, while "NULL" written here is refused (EIO) as long as the
        # kernel still counts a LUN port, which it can after a command was aborted.
        write(self.executor, f"{tpg.path}/nexus", nexus)
        return tpg

    def export(self, tpg: Tpg, lun: int, store: Backstore) -> str:
        """Map ``store`` as ``lun`` of the TPG; returns the LUN's configfs path."""
        path = f"{tpg.path}/lun/lun_{lun}"
        self._mkdir(path, f"LUN {lun} of {tpg.fabric}/{tpg.wwn}")
        self._link(store.path, f"{path}/{store.name}", f"{store.plugin}_{store.index}/{store.name} into LUN {lun}")
        return path

    def allow(self, tpg: Tpg, initiator_wwpn: str, lun: int) -> None:
        """An ACL for the initiator port with the TPG's ``lun`` mapped as the same LUN number."""
        acl = f"{tpg.path}/acls/{colon_wwn(initiator_wwpn)}"
        if not exists(self.executor, acl):
            self._mkdir(acl, f"ACL {colon_wwn(initiator_wwpn)} on {tpg.fabric}/{tpg.wwn}")
        self._mkdir(f"{acl}/lun_{lun}", f"mapped LUN {lun} for {colon_wwn(initiator_wwpn)}")
        self._link(f"{tpg.path}/lun/lun_{lun}", f"{acl}/lun_{lun}/lun_{lun}", f"mapped LUN {lun} to LUN {lun}")


def lio_state(executor: Executor) -> dict[str, list[str]]:
    """Backstores and fabric targets LIO holds on a node now (for leak checks)."""
    out = executor.run(
        f"find {ROOT}/core -mindepth 2 -maxdepth 2 -type d 2>/dev/null;"
        f" ls -d {ROOT}/fc/*/tpgt_* {ROOT}/qla2xxx/*/tpgt_* {ROOT}/loopback/*/tpgt_* 2>/dev/null; true",
        timeout=30,
    ).stdout.split()
    state: dict[str, list[str]] = {"backstores": [], "targets": []}
    for path in out:
        rel = path.removeprefix(f"{ROOT}/")
        if rel.startswith("core/"):
            if rel.split("/")[1] != "alua":
                state["backstores"].append(rel.removeprefix("core/"))
        else:
            state["targets"].append(rel)
    return state
