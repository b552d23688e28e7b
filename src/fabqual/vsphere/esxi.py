"""ESXi host checks for the doctor: RDMA driver VIBs, the NIC module's RoCE option, the RDMA device.

Read through the vSphere API (no SSH): ``imageConfigManager.FetchSoftwarePackages()``
for the installed VIBs, ``kernelModuleSystem.QueryConfiguredModuleOptionString``
for the module options, ``config.network.rdmaDevice`` for the host's RDMA devices.
Each problem becomes one actionable line; an empty list means the host is ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyVmomi import vim, vmodl

from fabqual.vsphere.session import fault_text

# The seeds' Marvell FastLinQ QL41262: Ethernet driver qedentv, RDMA driver qedrntv.
DEFAULT_VIBS: Mapping[str, str] = {"qedentv": "3.40", "qedrntv": "3.40"}
ROCE_MODULE = "qedentv"
ROCE_OPTION = "enable_roce=1"


def _version_key(version: str) -> list[int]:
    """``3.40.5.53-22vmw.703…`` -> [3, 40, 5, 53]: the upstream part, compared numerically."""
    head = version.split("-", 1)[0]
    return [int(part) for part in head.split(".") if part.isdigit()]


def check_esxi_host(
    host: Any,
    *,
    vibs: Mapping[str, str] = DEFAULT_VIBS,
    module: str = ROCE_MODULE,
    option: str = ROCE_OPTION,
) -> list[str]:
    """Problems with one ESXi host (a ``vim.HostSystem``), one actionable line each.

    ``vibs`` maps each required VIB to its minimum version.
    """
    name = host.name
    problems: list[str] = []
    try:
        packages = host.configManager.imageConfigManager.FetchSoftwarePackages()
    except vmodl.MethodFault as exc:
        problems.append(
            f"host {name}: cannot list installed VIBs through the API ({fault_text(exc)}); "
            f"check with `esxcli software vib list | grep -E '{'|'.join(vibs)}'`"
        )
    else:
        installed = {p.name: p for p in packages}
        for vib, minimum in vibs.items():
            found = installed.get(vib)
            if found is None:
                problems.append(
                    f"host {name}: VIB {vib} is not installed; install the Marvell driver bundle "
                    "(`esxcli software vib install -d /vmfs/volumes/<ds>/<bundle>.zip`) and reboot"
                )
            elif _version_key(found.version) < _version_key(minimum):
                problems.append(
                    f"host {name}: VIB {vib} is {found.version} ({found.vendor}), older than {minimum}; "
                    "install a newer Marvell driver bundle and reboot"
                )
    try:
        options = host.configManager.kernelModuleSystem.QueryConfiguredModuleOptionString(module)
    except vim.fault.NotFound:
        problems.append(f"host {name}: kernel module {module} is not loaded; install its VIB and reboot")
    except vmodl.MethodFault as exc:
        problems.append(
            f"host {name}: cannot read {module} options through the API ({fault_text(exc)}); "
            f"check with `esxcli system module parameters list -m {module}`"
        )
    else:
        key = option.split("=", 1)[0]
        if option not in (options or "").split():
            # esxcfg-module -s replaces the whole string: keep what is there.
            kept = " ".join(o for o in (options or "").split() if not o.startswith(f"{key}="))
            problems.append(
                f"host {name}: {module} options are {options!r}, without {option}; run "
                f"`esxcfg-module -s '{(kept + ' ' + option).strip()}' {module}` and reboot"
            )
    try:
        devices = list(host.config.network.rdmaDevice or [])
    except vmodl.MethodFault as exc:
        problems.append(f"host {name}: cannot read its RDMA devices ({fault_text(exc)})")
    else:
        if not devices:
            problems.append(
                f"host {name}: no RDMA device (config.network.rdmaDevice is empty); "
                f"with qedrntv installed, set {option} on {module} and reboot"
            )
        for dev in devices:
            state = dev.connectionInfo.state if dev.connectionInfo else "unknown"
            if state != "active":
                problems.append(
                    f"host {name}: RDMA device {dev.device} ({dev.driver}) is {state}; "
                    "check the uplink's cable and switch port (`esxcli rdma device list`)"
                )
    return problems
