"""What a rack is made of: frozen records loaded from a topology file.

These records hold facts only. Drivers read them; nothing here touches a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from fabqual.topology.grammar import (
    DISCOVER,
    check_cidr,
    check_device_path,
    check_disk_identity,
    check_env_name,
    check_eui,
    check_firmware_file,
    check_host,
    check_inventory_name,
    check_lab_release,
    check_local_path,
    check_module,
    check_name,
    check_netdev,
    check_network,
    check_node_address,
    check_node_path,
    check_nqn,
    check_profile,
    check_rdma_device,
    check_text,
    check_thumbprint,
    check_unix_user,
    check_vmknic,
    check_vmnic,
    check_vsphere_user,
    check_wwn,
    each,
)
from fabqual.topology.records import field


def check_link_type(value: str) -> str | None:
    """A registered link type (:mod:`fabqual.linkspec`: built-in or from an installed plugin)."""
    from fabqual.linkspec import link_types  # the registry imports these records: asked at load time

    known = link_types()
    return None if value in known else f"not one of {', '.join(known)}"


def check_node_role(value: str) -> str | None:
    """A node role some registered link type defines."""
    from fabqual.linkspec import node_roles

    known = node_roles()
    return None if value in known else f"not one of {', '.join(known)}"


def check_target_backend(value: str) -> str | None:
    """A registered NVMe target backend (:mod:`fabqual.targetspec`: built-in or from an installed plugin)."""
    from fabqual.targetspec import target_backends  # the registry imports these records: asked at load time

    known = target_backends()
    return None if value in known else f"not one of {', '.join(known)} (the registered NVMe target backends)"


def check_port(value: int) -> str | None:
    return None if 0 < value < 65536 else "a TCP port is between 1 and 65535"


def check_positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than zero"


def normalize_wwn(value: str) -> str:
    """A WWN as 0x followed by 16 lower-case hex digits, the form sysfs prints."""
    digits = value.lower().removeprefix("0x").replace(":", "")
    return "0x" + digits


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """How fabqual authenticates to a node. Exactly one way; never a password in the file."""

    key_file: str | None = field(None, check=check_local_path, doc="private key file (~ is expanded)")
    agent: bool = field(False, doc="use keys from the running ssh-agent")
    password_env: str | None = field(
        None, check=check_env_name, doc="name of an environment variable holding the password"
    )


@dataclass(frozen=True, kw_only=True)
class Hba:
    """A Fibre Channel port."""

    name: str = field(check=check_name)
    model: str = field("unknown", check=check_text, doc="e.g. QLE2742")
    wwpn: str = field(DISCOVER, check=check_wwn)
    wwnn: str = field(DISCOVER, check=check_wwn)
    driver: str = field("qla2xxx", check=check_module)
    firmware: str | None = field(
        None, check=check_firmware_file, doc="file under /lib/firmware the driver loads, e.g. ql2700_fw.bin"
    )
    emulation: Literal["none", "fcloop", "fcoe"] = field("none", doc="what stands in for the HBA")
    netdev: str | None = field(
        None,
        check=check_netdev,
        doc="netdev carrying FCoE (emulation: fcoe); for nvme-fcloop, which has no port speed,"
        " the netdev whose speed stands in for the port's line rate",
    )


@dataclass(frozen=True, kw_only=True)
class Rnic:
    """An RDMA-capable NIC port (RoCE)."""

    name: str = field(check=check_name)
    model: str = field("unknown", check=check_text, doc="e.g. QL41262")
    netdev: str = field(DISCOVER, check=check_netdev)
    rdma_device: str = field(DISCOVER, check=check_rdma_device, doc="e.g. qedr0, or 'discover'")
    driver: str = field("qedr", check=check_module)
    address: str | None = field(None, check=check_cidr, doc="IPv4 address/prefix on the data link")
    emulation: Literal["none", "rxe"] = field("none")


@dataclass(frozen=True, kw_only=True)
class Nic:
    """An Ethernet port carrying IP storage traffic (NVMe/TCP): its interface and address."""

    name: str = field(check=check_name)
    model: str = field("unknown", check=check_text, doc="e.g. E810-XXVDA2")
    netdev: str = field(DISCOVER, check=check_netdev, doc="the interface, or 'discover' to find it by address")
    address: str = field(check=check_cidr, doc="IPv4 address/prefix on the data link")
    driver: str | None = field(None, check=check_module, doc="kernel module the doctor checks, e.g. ice")


# The ways a scratch device can be named; exactly one per device (checked at load).
SCRATCH_IDENTITY_KEYS = ("path", "wwid", "serial", "eui")


@dataclass(frozen=True, kw_only=True)
class ScratchDevice:
    """A block device whose contents fabqual may destroy. Nothing else is ever written.

    Named by exactly one of: ``path`` (best a stable /dev/disk/by-id/... or
    by-path name; a kernel name like /dev/nvme0n1 may change between boots),
    ``wwid``, ``serial`` or ``eui`` (looked up under /sys/class/block on the node).
    """

    name: str = field(check=check_name)
    path: str | None = field(None, check=check_device_path, doc="e.g. /dev/disk/by-id/nvme-eui.0025385b71b01234")
    wwid: str | None = field(None, check=check_disk_identity, doc="the disk's WWID, e.g. naa.5000c500a1b2c3d4")
    serial: str | None = field(None, check=check_disk_identity, doc="the disk's serial number")
    eui: str | None = field(None, check=check_eui, doc="an NVMe namespace's EUI-64 or NGUID")
    create: Literal["none", "null_blk", "loop"] = field(
        "none", doc="create it at bring-up (emulated lab) instead of expecting it"
    )
    size_mb: int = field(1024, check=check_positive)
    wipe_signatures: bool = field(
        False, doc="wipe partition tables/file system signatures found on it (logged) instead of refusing it"
    )

    @property
    def declared(self) -> str:
        """How the topology names the device: its path, or ``wwid:...``, ``serial:...``, ``eui:...``."""
        key, value = self.identity
        return value if key == "path" else f"{key}:{value}"

    @property
    def identity(self) -> tuple[str, str]:
        """(key, value) of the one naming key given: path, wwid, serial or eui."""
        for key in SCRATCH_IDENTITY_KEYS:
            value = getattr(self, key)
            if value is not None:
                return key, value
        return "path", ""


@dataclass(frozen=True, kw_only=True)
class NvmeTarget:
    """Which NVMe-oF target implementation a node runs."""

    backend: str = field(
        "kernel", check=check_target_backend, doc="a registered NVMe target backend: kernel, spdk or a plugin's"
    )
    rpc_socket: str = field("/var/tmp/spdk.sock", check=check_node_path, doc="SPDK JSON-RPC socket (backend: spdk)")
    hugepages_gb: int = field(6, doc="minimum hugepage memory SPDK needs (backend: spdk)")


@dataclass(frozen=True, kw_only=True)
class VmPlacement:
    """Where a VM node lives in vSphere."""

    vcenter: str = field(check=check_name)
    esxi_host: str = field(check=check_inventory_name)
    vm_name: str = field(check=check_inventory_name)


@dataclass(frozen=True, kw_only=True)
class Node:
    """A Linux machine (server or VM) reached over SSH."""

    name: str = field(check=check_name)
    address: str = field(check=check_node_address, doc="host name or address, or 'local' for this machine")
    port: int = field(22, check=check_port)
    user: str = field("root", check=check_unix_user)
    credentials: Credentials = field(Credentials(agent=True))
    host_key_check: bool = field(True, doc="false only for throwaway nodes (never with password_env)")
    known_hosts: str | None = field(None, check=check_local_path, doc="known_hosts file (default ~/.ssh/known_hosts)")
    roles: tuple[str, ...] = field((), check=each(check_node_role), doc="what the node serves as")
    hbas: tuple[Hba, ...] = field(())
    rnics: tuple[Rnic, ...] = field(())
    nics: tuple[Nic, ...] = field(())
    scratch_devices: tuple[ScratchDevice, ...] = field(())
    nvme_target: NvmeTarget | None = field(None)
    vm: VmPlacement | None = field(None)
    console_log: str | None = field(
        None,
        check=check_local_path,
        doc="file on this machine that logs the node's serial console (conserver, IPMI SOL);"
        " its last lines are shown when the node is lost during a test",
    )

    def hba(self, name: str) -> Hba:
        return _by_name(self.hbas, name)

    def rnic(self, name: str) -> Rnic:
        return _by_name(self.rnics, name)

    def nic(self, name: str) -> Nic:
        return _by_name(self.nics, name)

    def scratch(self, name: str) -> ScratchDevice:
        return _by_name(self.scratch_devices, name)


@dataclass(frozen=True, kw_only=True)
class VCenter:
    """A vCenter Server (or the simulator standing in for it)."""

    name: str = field(check=check_name)
    address: str = field(check=check_host)
    port: int = field(443, check=check_port)
    user: str = field("administrator@vsphere.local", check=check_vsphere_user)
    password_env: str = field(check=check_env_name, doc="environment variable holding the password")
    tls_verify: bool = field(True, doc="false is refused (the password would go unverified): pin thumbprint/ca_file")
    ca_file: str | None = field(None, check=check_local_path, doc="CA bundle to verify the vCenter certificate with")
    thumbprint: str | None = field(
        None, check=check_thumbprint, doc="SHA-1 thumbprint of the vCenter certificate to pin"
    )
    datacenter: str = field("Datacenter", check=check_inventory_name)
    simulator: bool = field(False, doc="start VMware's vcsim on this address (emulated lab)")


@dataclass(frozen=True, kw_only=True)
class EsxiHost:
    """An ESXi host managed by a vCenter."""

    name: str = field(check=check_inventory_name, doc="the host's name in the vCenter inventory")
    vcenter: str = field(check=check_name)
    uplink: str = field(check=check_vmnic, doc="the physical NIC (vmnic) on the RoCE port, e.g. vmnic4")
    vmknic: str = field("vmk1", check=check_vmknic)
    vmknic_address: str | None = field(None, check=check_cidr)
    ssh_address: str | None = field(None, check=check_host, doc="for esxcli checks when the API lacks a fact")


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One end of a link: a node and, where it matters, the device on it."""

    node: str = field(check=check_name)
    device: str | None = field(None, check=check_name, doc="name of an HBA or RNIC of that node")


@dataclass(frozen=True, kw_only=True)
class FcNvmeParams:
    namespaces: tuple[str, ...] = field(check=each(check_name), doc="scratch devices of the target node to export")
    subsystem_nqn: str = field("nqn.2024-01.io.fabqual:fc-nvme", check=check_nqn)
    fio_runtime_s: int = field(10, check=check_positive)


@dataclass(frozen=True, kw_only=True)
class RdmaPath:
    """One more path from the host to the same subsystem (native NVMe multipath)."""

    target: str | None = field(None, check=check_name, doc="RNIC of the target node; default: the link's target device")
    host: str | None = field(None, check=check_name, doc="RNIC of the host node; default: the link's host device")
    trsvcid: int = field(4421, check=check_port)


@dataclass(frozen=True, kw_only=True)
class NvmetRdmaParams:
    namespaces: tuple[str, ...] = field(check=each(check_name), doc="scratch devices of the target node to export")
    subsystem_nqn: str = field("nqn.2024-01.io.fabqual:nvmet-rdma", check=check_nqn)
    trsvcid: int = field(4420, check=check_port)
    fio_runtime_s: int = field(10, check=check_positive)
    extra_paths: tuple[RdmaPath, ...] = field((), doc="further target ports/RNICs to the subsystem: multipath")


@dataclass(frozen=True, kw_only=True)
class TcpPath:
    """One more path from the host to the same subsystem over TCP (native NVMe multipath)."""

    target: str | None = field(None, check=check_name, doc="NIC of the target node; default: the link's target device")
    host: str | None = field(None, check=check_name, doc="NIC of the host node; default: the link's host device")
    trsvcid: int = field(4421, check=check_port)


@dataclass(frozen=True, kw_only=True)
class NvmeTcpParams:
    namespaces: tuple[str, ...] = field(check=each(check_name), doc="scratch devices of the target node to export")
    subsystem_nqn: str = field("nqn.2024-01.io.fabqual:nvme-tcp", check=check_nqn)
    trsvcid: int = field(4420, check=check_port)
    fio_runtime_s: int = field(10, check=check_positive)
    extra_paths: tuple[TcpPath, ...] = field((), doc="further target ports/NICs to the subsystem: multipath")


@dataclass(frozen=True, kw_only=True)
class PvrdmaParams:
    vcenter: str = field(check=check_name)
    switch: str = field(
        "fabqual-pvrdma-dvs", check=check_inventory_name, doc="the vSphere Distributed Switch to create or use"
    )
    portgroup: str = field("fabqual-pvrdma-pg", check=check_inventory_name)
    mtu: int = field(9000, check=check_positive)


@dataclass(frozen=True, kw_only=True)
class IpofcParams:
    mtus: tuple[int, ...] = field((1500, 9000))
    tunnel_prefix: str = field("10.77.0.0/30", check=check_network, doc="addresses for the two tunnel ends")
    carrier: str = field(
        "fc",
        check=check_name,
        doc="a registered carrier (fabqual.links.carriers): fc: real HBAs; fcoe: software FCoE between nodes;"
        " tcm_loop: one node, two namespaces",
    )
    offload: bool = field(True, doc="TUN checksum/TSO offload: TCP crosses in 64 KiB super-packets at any MTU")


@dataclass(frozen=True, kw_only=True)
class FcpParams:
    backstore: str = field(check=check_name, doc="the scratch device of the target node LIO exports as LUN 0")
    carrier: Literal["fc", "fcoe"] = field(
        "fc", doc="fc: real QLogic HBAs (tcm_qla2xxx); fcoe: software FCoE between the nodes (tcm_fc)"
    )
    max_sectors_kb: int | None = field(
        None, check=check_positive, doc="largest I/O the initiator's disk sends, in KiB; default: the kernel's"
    )
    queue_depth: int | None = field(
        None, check=check_positive, doc="commands the initiator's disk keeps in flight; default: the kernel's"
    )
    fio_runtime_s: int = field(10, check=check_positive)


@dataclass(frozen=True, kw_only=True)
class Link:
    """A link under test between endpoints of the rack."""

    name: str = field(check=check_name)
    type: str = field(check=check_link_type, doc="a registered link type")
    endpoints: dict[str, Endpoint]
    params: object = field(doc="the link type's params record (its LinkSpec.params)")
    emulated: bool = False

    def end(self, role: str) -> Endpoint:
        return self.endpoints[role]


@dataclass(frozen=True, kw_only=True)
class LabReleases:
    """The emulated lab's guest releases (written by ``fabqual lab up`` into its topology)."""

    target: str = field("bookworm", check=check_lab_release, doc="Debian release of the target guest (tgt)")
    host: str = field("bookworm", check=check_lab_release, doc="Debian release of the host guest (ini)")


@dataclass(frozen=True, kw_only=True)
class Topology:
    """A whole rack: nodes, vCenters, ESXi hosts, links, and the thresholds profile."""

    name: str = field(check=check_text)
    source: str = field(doc="the file it was loaded from (set by the loader, not read from the file)")
    profile: str = field(check=check_profile)
    nodes: tuple[Node, ...]
    vcenters: tuple[VCenter, ...]
    esxi_hosts: tuple[EsxiHost, ...]
    links: tuple[Link, ...]
    emulated: bool = False
    lab: LabReleases | None = None

    def node(self, name: str) -> Node:
        return _by_name(self.nodes, name)

    def vcenter(self, name: str) -> VCenter:
        return _by_name(self.vcenters, name)

    def links_of(self, link_type: str) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.type == link_type)


class _HasName(Protocol):
    @property
    def name(self) -> str: ...


_Named = TypeVar("_Named", bound=_HasName)


def _by_name(items: tuple[_Named, ...], name: str) -> _Named:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(name)
