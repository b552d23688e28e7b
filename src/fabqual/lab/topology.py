"""The topology of the emulated lab, generated for the ports of the running lab.

A plain function builds the dict (so a pvrdma/vCenter section can be added to
it later); :func:`write_topology` dumps it as YAML with a comment above each
emulated device saying what real hardware it stands in for.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import yaml

from fabqual.lab.guest import DATA_NETDEV
from fabqual.lab.releases import Pair

TGT_DATA = "192.168.77.1/24"
INI_DATA = "192.168.77.2/24"

# Device name -> what it stands in for on the lab rack (written as a YAML comment).
STANDS_IN_FOR: dict[str, str] = {
    "fc0": "stands in for a QLogic QLE27xx port (qla2xxx): nvme-fcloop loops FC-NVMe inside the target guest",
    "fcoe0": "stands in for a QLogic 8G HBA in target/initiator mode: software FCoE (VN2VN) on the data link",
    "rnic0": "stands in for a Marvell QL41262 RoCE port (qede + qedr): soft-RoCE rdma_rxe on the data link",
    "nullb0": "stands in for a scratch SSD: memory-backed null_blk, keeps data so writes are verified",
    "nullb1": "stands in for a scratch SSD: memory-backed null_blk, keeps data so writes are verified",
    "nullb2": "stands in for a scratch SSD: memory-backed null_blk, keeps data so writes are verified",
    "nullb3": "stands in for a scratch SSD: memory-backed null_blk, keeps data so writes are verified",
    "tcp0": "stands in for a 25G Ethernet port (e.g. E810): the virtio-net data link between the guests",
    "pvrdma0": "stands in for vmw_pvrdma0 (a VM's PVRDMA adapter): soft-RoCE rdma_rxe on the data link",
}


def lab_topology(
    ssh_ports: dict[str, int],
    key_file: Path,
    known_hosts: Path,
    consoles: dict[str, Path] | None = None,
    pair: Pair | None = None,
) -> dict[str, Any]:
    """The emulated lab as a topology dict: guests ``tgt`` and ``ini`` and their links.

    ``consoles``: each guest's serial console log, shown when a guest is lost during a test.
    ``pair``: the guests' Debian releases, written as the ``lab`` section (bookworm on both if not given).
    """
    pair = pair or Pair()

    def node(name: str, roles: list[str], address: str) -> dict[str, Any]:
        return {
            "name": name,
            "address": "127.0.0.1",
            "port": ssh_ports[name],
            "user": "root",
            "credentials": {"key_file": str(key_file)},
            "known_hosts": str(known_hosts),
            **({"console_log": str(consoles[name])} if consoles and name in consoles else {}),
            "roles": roles,
            "hbas": [
                {
                    "name": "fc0",
                    "model": "QLE2742 (emulated by nvme-fcloop)",
                    "driver": "nvme-fcloop",
                    "emulation": "fcloop",
                    # fcloop ports have no speed: the data NIC's (QEMU's speed property) stands in for it.
                    "netdev": DATA_NETDEV,
                },
                {
                    "name": "fcoe0",
                    "model": "QLE2562 (emulated by fcoe)",
                    "driver": "fcoe",
                    "emulation": "fcoe",
                    "netdev": DATA_NETDEV,
                },
            ],
            "rnics": [
                {
                    "name": "rnic0",
                    "model": "QL41262 (emulated by rdma_rxe)",
                    "emulation": "rxe",
                    "netdev": DATA_NETDEV,
                    "rdma_device": "rxe0",
                    "driver": "rdma_rxe",
                    "address": address,
                }
            ],
            "nics": [
                {"name": "tcp0", "model": "25GbE (emulated by virtio-net)", "netdev": DATA_NETDEV, "address": address}
            ],
        }

    tgt = node("tgt", ["nvme_target", "nvme_host", "rdma_endpoint", "vm", "ipofc_end", "fcp_target"], TGT_DATA)
    tgt["nvme_target"] = {"backend": "kernel"}
    tgt["scratch_devices"] = [
        {"name": f"nullb{i}", "path": f"/dev/nullb{i}", "create": "null_blk", "size_mb": 512} for i in (0, 1, 2, 3)
    ]
    ini = node("ini", ["nvme_host", "rdma_endpoint", "vm", "ipofc_end", "fcp_initiator"], INI_DATA)
    data: dict[str, Any] = {
        "name": "emulated-lab",
        "profile": "emulated",
        "emulated": True,
        "lab": {"target": pair.target, "host": pair.host},
        "nodes": [tgt, ini],
        "links": [
            {
                "name": "fc0",
                "type": "fc_nvme",
                "emulated": True,
                "target": {"node": "tgt", "device": "fc0"},
                "host": {"node": "tgt", "device": "fc0"},
                "namespaces": ["nullb0"],
            },
            {
                "name": "roce0",
                "type": "nvmet_rdma",
                "emulated": True,
                "target": {"node": "tgt", "device": "rnic0"},
                "host": {"node": "ini", "device": "rnic0"},
                "namespaces": ["nullb1"],
                # A second target port over the same soft-RoCE devices: native NVMe multipath.
                "extra_paths": [{"trsvcid": 4421}],
            },
            {
                "name": "tcp0",
                "type": "nvme_tcp",
                "emulated": True,
                "target": {"node": "tgt", "device": "tcp0"},
                "host": {"node": "ini", "device": "tcp0"},
                "namespaces": ["nullb2"],
                # A second target port on the same addresses: native NVMe multipath.
                "extra_paths": [{"trsvcid": 4421}],
            },
            {
                "name": "ipofc0",
                "type": "ipofc",
                "emulated": True,
                "target": {"node": "tgt", "device": "fcoe0"},
                "initiator": {"node": "ini", "device": "fcoe0"},
                "carrier": "fcoe",
            },
            {
                "name": "fcp0",
                "type": "fcp",
                "emulated": True,
                "target": {"node": "tgt", "device": "fcoe0"},
                "initiator": {"node": "ini", "device": "fcoe0"},
                "carrier": "fcoe",
                "backstore": "nullb3",
                # tcm_fc over software FCoE hung with 1 MiB I/O at QD32: the initiator's disk sends at most
                # 64 KiB per command and keeps 4 in flight (measured numbers: the emulated thresholds).
                "max_sectors_kb": 64,
                "queue_depth": 4,
            },
        ],
    }
    add_pvrdma(data, free_tcp_port())
    return data


# -- pvrdma: VMware's vCenter simulator + the two guests as the two VMs ---------------

VCSIM_PASSWORD_ENV = "FABQUAL_VCSIM_PASSWORD"
# vcsim's default inventory (-host 2 -vm 2): two hosts in cluster DC0_C0, one VM on each.
VCSIM_HOSTS = {"tgt": ("DC0_C0_H0", "192.168.77.11/24"), "ini": ("DC0_C0_H1", "192.168.77.12/24")}
VCSIM_VMS = {"tgt": "DC0_C0_RP0_VM0", "ini": "DC0_C0_RP0_VM1"}
VCSIM_UPLINK = "vmnic1"  # a pnic every vcsim host has and no standard switch uses


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 free now (the pvrdma driver starts vcsim on it at bring-up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def add_pvrdma(data: dict[str, Any], vcsim_port: int) -> None:
    """The pvrdma part: vcsim as the vCenter, its two hosts, tgt/ini as its two VMs, rxe for vmw_pvrdma0."""
    data["vcenters"] = [
        {
            "name": "vcsim",
            "address": "127.0.0.1",
            "port": vcsim_port,
            "user": "fabqual",
            "password_env": VCSIM_PASSWORD_ENV,  # unset: the driver makes up one for its own simulator
            "datacenter": "DC0",
            "simulator": True,
            "tls_verify": True,  # verified against the certificate the simulator writes at start
        }
    ]
    data["esxi_hosts"] = [
        {"name": host, "vcenter": "vcsim", "uplink": VCSIM_UPLINK, "vmknic": "vmk1", "vmknic_address": vmk}
        for host, vmk in VCSIM_HOSTS.values()
    ]
    for node in data["nodes"]:
        name = node["name"]
        node["vm"] = {"vcenter": "vcsim", "esxi_host": VCSIM_HOSTS[name][0], "vm_name": VCSIM_VMS[name]}
        node["rnics"].append(
            {
                "name": "pvrdma0",
                "model": "PVRDMA (emulated by rdma_rxe)",
                "emulation": "rxe",
                "netdev": DATA_NETDEV,
                "rdma_device": "rxe0",
                "driver": "rdma_rxe",
                "address": TGT_DATA if name == "tgt" else INI_DATA,
            }
        )
    data["links"].append(
        {
            "name": "pvrdma0",
            "type": "pvrdma",
            "emulated": True,
            "server": {"node": "tgt", "device": "pvrdma0"},
            "client": {"node": "ini", "device": "pvrdma0"},
            "vcenter": "vcsim",
            "mtu": 9000,
        }
    )


def render(data: dict[str, Any]) -> str:
    """YAML text of a topology dict, each emulated device preceded by what it stands in for."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=200)
    lines: list[str] = [
        "# The fabqual emulated lab (two QEMU guests), written by `fabqual lab up`/prepare.",
        "# Regenerated for every lab; edit fabqual/lab/topology.py instead of this file.",
    ]
    section = ""
    for line in text.splitlines():
        top = re.match(r"^(\w+):", line)
        if top:
            section = top.group(1)
        item = re.match(r"^(\s*)- name: (\S+)$", line)
        if section == "nodes" and item and item.group(2) in STANDS_IN_FOR:
            lines.append(f"{item.group(1)}# {STANDS_IN_FOR[item.group(2)]}")
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_topology(path: Path, data: dict[str, Any]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(data))
    tmp.replace(path)
    return path
