"""The rack inventory: what every node runs, read from the node itself.

One shell script per node prints ``section|name|key|value`` lines (kernel, OS,
FC HBAs, RDMA devices, NICs, tool versions); :func:`parse_inventory` turns them
into a dict. A node that cannot be reached gets its error line instead of facts,
so a broken node never stops the run or hides the other nodes.

Other code (the vSphere driver, for ESXi and vCenter builds) adds its own table
with :func:`contribute_inventory`; the report shows it as a section of its own.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fabqual.executors.base import Executor
from fabqual.redaction import of_topology, redact
from fabqual.tools.declare import specs as tool_specs
from fabqual.topology.model import Topology

Facts = dict[str, str]
Inventory = dict[str, Any]

# Why one script: one round trip per node, and a missing file or tool just prints
# nothing for that fact instead of failing the whole collection.
INVENTORY_SCRIPT = r"""
p() { printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "$4"; }
rd() { [ -r "$1" ] && tr -d '\n' < "$1" 2>/dev/null; }
p host - hostname "$(hostname -f 2>/dev/null || hostname)"
p host - kernel "$(uname -r)"
p host - arch "$(uname -m)"
p host - os "$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") )"
for h in /sys/class/fc_host/*; do
  [ -e "$h" ] || continue; n=${h##*/}
  for k in port_name node_name speed port_state port_type symbolic_name; do p fc_host "$n" "$k" "$(rd "$h/$k")"; done
  s=/sys/class/scsi_host/$n
  for k in model_name model_desc fw_version driver_version serial_num; do
    [ -r "$s/$k" ] && p fc_host "$n" "$k" "$(rd "$s/$k")"
  done
  d=$(readlink -f "$h/device/../driver" 2>/dev/null); [ -n "$d" ] && [ -e "$d" ] && p fc_host "$n" driver "${d##*/}"
done
for d in /sys/class/infiniband/*; do
  [ -e "$d" ] || continue; n=${d##*/}
  for k in fw_ver hca_type node_guid board_id; do [ -r "$d/$k" ] && p rdma "$n" "$k" "$(rd "$d/$k")"; done
  for q in "$d"/ports/*; do
    [ -e "$q" ] || continue; i=${q##*/}
    p rdma "$n" "port$i.rate" "$(rd "$q/rate")"
    p rdma "$n" "port$i.state" "$(rd "$q/state")"
    p rdma "$n" "port$i.link_layer" "$(rd "$q/link_layer")"
  done
  for m in "$d"/device/net/*; do [ -e "$m" ] && p rdma "$n" netdev "${m##*/}"; done
  nd=$(rd "$d/parent"); [ -n "$nd" ] && p rdma "$n" netdev "$nd"
done
for q in /sys/class/net/*; do
  [ -e "$q/device" ] || continue; n=${q##*/}
  ethtool -i "$n" 2>/dev/null | while IFS= read -r line; do
    k=${line%%:*}; v=${line#*: }
    case "$k" in driver|version|firmware-version|bus-info) p net "$n" "$k" "$v";; esac
  done
  p net "$n" speed "$(rd "$q/speed" 2>/dev/null)"
  p net "$n" mtu "$(rd "$q/mtu")"
  p net "$n" address "$(rd "$q/address")"
done
v() {
  t=$1; shift
  if command -v "$1" >/dev/null 2>&1; then p tool "$t" version "$("$@" 2>&1 | head -n 1)"
  else p tool "$t" version "not installed"; fi
}
v nvme-cli nvme version
v rdma-core sh -c 'command -v rdma >/dev/null && rdma -V'
v spdk sh -c 'command -v spdk_tgt >/dev/null && spdk_tgt --version || echo "not installed"'
"""
# The tools fabqual runs, with the version command each declares next to its parser.
INVENTORY_SCRIPT += "".join(f"v {shlex.quote(spec.name)} {spec.version}\n" for spec in tool_specs() if spec.version)
INVENTORY_SCRIPT += "exit 0\n"


def parse_inventory(text: str) -> Inventory:
    """``section|name|key|value`` lines → ``{"facts": {...}, "devices": {section: {name: facts}}, "tools": {...}}``."""
    facts: Facts = {}
    devices: dict[str, dict[str, Facts]] = {}
    tools: Facts = {}
    for line in text.splitlines():
        parts = line.split("|", 3)
        if len(parts) != 4:
            continue
        section, name, key, value = (part.strip() for part in parts)
        if section == "host":
            facts[key] = value
        elif section == "tool":
            tools[name] = value or "no version printed"
        elif value:
            devices.setdefault(section, {}).setdefault(name, {})
            device = devices[section][name]
            # netdev may be printed twice (device/net and parent); keep the first
            device.setdefault(key, value)
    return {"facts": facts, "devices": devices, "tools": tools}


def collect_node(name: str, address: str, executor_for: Callable[[str], Executor], timeout: float = 60.0) -> Inventory:
    """The inventory of one node, or its error line when it cannot be read."""
    entry: Inventory = {"name": name, "address": address}
    try:
        result = executor_for(name).run(INVENTORY_SCRIPT, timeout=timeout, check=False)
    except Exception as error:  # a report side path: any failure becomes a line, never a crash
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        entry.update(reachable=False, error=f"{name} ({address}): inventory not collected: {first}")
        return entry
    entry.update(parse_inventory(result.stdout))
    entry["reachable"] = True
    if not entry["facts"].get("kernel"):
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        entry["error"] = f"{name} ({address}): inventory printed no kernel (exit {result.exit_status}): {tail[0]}"
    return entry


def collect_inventory(
    topology: Topology,
    executor_for: Callable[[str], Executor],
    *,
    extra: dict[str, list[Facts]] | None = None,
    timeout: float = 60.0,
) -> Inventory:
    """Every node of ``topology`` (in parallel: a rack has slow SSH logins), vCenters, contributed tables."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(topology.nodes)))) as pool:
        nodes = list(
            pool.map(lambda node: collect_node(node.name, node.address, executor_for, timeout), topology.nodes)
        )
    vcenters = [
        {"name": vc.name, "address": vc.address, "user": vc.user, "password": f"from ${vc.password_env}"}
        for vc in topology.vcenters
    ]
    esxi = [{"name": host.name, "vcenter": host.vcenter, "uplink": host.uplink} for host in topology.esxi_hosts]
    inventory: Inventory = {"nodes": nodes, "vcenters": vcenters, "esxi_hosts": esxi, "extra": dict(extra or {})}
    redacted: dict[str, Any] = redact(inventory, of_topology(topology))
    return redacted
