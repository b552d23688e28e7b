"""The vSphere request objects the PVRDMA bring-up sends, built by pure functions.

Kept apart from the driver so the requests that only a real vCenter/ESXi can
execute (vmknic create/migrate, uplink assignment) are checked by contract tests
on the objects themselves, and the driver sends exactly what was tested.
"""

from __future__ import annotations

import ipaddress

from pyVmomi import vim

UPLINK_NAME = "Uplink 1"  # PVRDMA: the RDMA NIC must be the switch's only uplink (no teaming)
PVRDMA_OPTION = "Net.PVRDMAVmknic"
PVRDMA_RULESET = "pvrdma"


def dvs_create_spec(
    name: str, version: str, mtu: int, description: str = ""
) -> vim.DistributedVirtualSwitch.CreateSpec:
    """CreateDVS_Task: a VMware DVS of ``version`` with one uplink and ``mtu`` (``description``: fabqual's mark)."""
    config = vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(
        name=name,
        maxMtu=mtu,
        description=description or None,
        uplinkPortPolicy=vim.DistributedVirtualSwitch.NameArrayUplinkPortPolicy(uplinkPortName=[UPLINK_NAME]),
    )
    return vim.DistributedVirtualSwitch.CreateSpec(configSpec=config, productInfo=vim.dvs.ProductSpec(version=version))


def dvs_mtu_spec(config_version: str, mtu: int) -> vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec:
    """ReconfigureDvs_Task: change only the switch MTU (configVersion guards concurrent edits)."""
    return vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(configVersion=config_version, maxMtu=mtu)


def portgroup_spec(name: str, description: str = "", ports: int = 8) -> vim.dvs.DistributedVirtualPortgroup.ConfigSpec:
    """AddDVPortgroup_Task: an early-binding port group (static ports, as the vSphere client makes);
    ``description``: fabqual's mark."""
    return vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
        name=name, type="earlyBinding", numPorts=ports, description=description or None
    )


def _backing(uplink: str | None, uplink_portgroup_key: str | None) -> vim.dvs.HostMember.PnicBacking | None:
    if uplink is None:
        return None
    pnic = vim.dvs.HostMember.PnicSpec(pnicDevice=uplink)
    if uplink_portgroup_key:
        pnic.uplinkPortgroupKey = uplink_portgroup_key
    return vim.dvs.HostMember.PnicBacking(pnicSpec=[pnic])


def host_member_spec(
    config_version: str,
    operation: str,
    host: vim.HostSystem,
    uplink: str | None = None,
    uplink_portgroup_key: str | None = None,
) -> vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec:
    """ReconfigureDvs_Task: add/edit/remove one host, with ``uplink`` (a free pnic) as its only uplink."""
    member = vim.dvs.HostMember.ConfigSpec(operation=operation, host=host)
    backing = _backing(uplink, uplink_portgroup_key)
    if backing is not None:
        member.backing = backing
    return vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(configVersion=config_version, host=[member])


def ip_config(address_with_prefix: str) -> vim.host.IpConfig:
    """A static vmknic address from ``a.b.c.d/nn`` (``/24`` when no prefix is given)."""
    iface = ipaddress.IPv4Interface(address_with_prefix if "/" in address_with_prefix else f"{address_with_prefix}/24")
    return vim.host.IpConfig(dhcp=False, ipAddress=str(iface.ip), subnetMask=str(iface.netmask))


def dv_port(switch_uuid: str, portgroup_key: str) -> vim.dvs.PortConnection:
    return vim.dvs.PortConnection(switchUuid=switch_uuid, portgroupKey=portgroup_key)


def vmknic_spec(
    switch_uuid: str, portgroup_key: str, address: str | None, mtu: int | None
) -> vim.host.VirtualNic.Specification:
    """AddVirtualNic/UpdateVirtualNic: a vmknic on a DV port group; unset fields stay as they are."""
    spec = vim.host.VirtualNic.Specification(distributedVirtualPort=dv_port(switch_uuid, portgroup_key))
    if address is not None:
        spec.ip = ip_config(address)
    if mtu is not None:
        spec.mtu = mtu
    return spec


def vmknic_migration_config(
    device: str,
    switch_uuid: str,
    portgroup_key: str,
    uplink: str,
    uplink_portgroup_key: str | None,
    standard_switch: vim.host.VirtualSwitch,
    standard_portgroup: vim.host.PortGroup | None,
) -> vim.host.NetworkConfig:
    """UpdateNetworkConfig: move the uplink pnic *and* its vmknic off a standard switch in one call.

    This is what the vSphere client's "Add and Manage Hosts" does when the pnic
    carries the vmknic (as in the seeds' recipe): moving them one by one fails
    because the pnic is in use. The standard switch keeps its other uplinks.
    """
    others = [n for n in (standard_switch.spec.bridge.nicDevice if standard_switch.spec.bridge else []) if n != uplink]
    vss_spec = vim.host.VirtualSwitch.Specification(numPorts=standard_switch.spec.numPorts, mtu=standard_switch.mtu)
    if others:
        vss_spec.bridge = vim.host.VirtualSwitch.BondBridge(nicDevice=others)
    config = vim.host.NetworkConfig(
        vswitch=[vim.host.VirtualSwitch.Config(changeOperation="edit", name=standard_switch.name, spec=vss_spec)],
        proxySwitch=[
            vim.host.HostProxySwitch.Config(
                changeOperation="edit",
                uuid=switch_uuid,
                spec=vim.host.HostProxySwitch.Specification(backing=_backing(uplink, uplink_portgroup_key)),
            )
        ],
        vnic=[
            vim.host.VirtualNic.Config(
                changeOperation="edit",
                device=device,
                portgroup="",
                spec=vim.host.VirtualNic.Specification(distributedVirtualPort=dv_port(switch_uuid, portgroup_key)),
            )
        ],
    )
    if standard_portgroup is not None:
        config.portgroup = [vim.host.PortGroup.Config(changeOperation="remove", spec=standard_portgroup.spec)]
    return config


def vmknic_restore_config(
    device: str, spec: vim.host.VirtualNic.Specification, portgroup: str
) -> vim.host.NetworkConfig:
    """UpdateNetworkConfig: put a vmknic back where it was (a standard port group or a DV port)."""
    return vim.host.NetworkConfig(
        vnic=[vim.host.VirtualNic.Config(changeOperation="edit", device=device, portgroup=portgroup, spec=spec)]
    )


def advanced_option(value: str) -> list[vim.option.OptionValue]:
    """UpdateOptions: tag the vmknic PVRDMA uses (``""`` untags; the option is a string)."""
    return [vim.option.OptionValue(key=PVRDMA_OPTION, value=value)]


def pvrdma_nic(
    switch_uuid: str, portgroup_key: str, hardware_version: int, protocol: str = "rocev2"
) -> vim.vm.device.VirtualVmxnet3Vrdma:
    """A PVRDMA adapter on a DV port group; ``deviceProtocol`` only where the VM hardware knows it.

    VMware's own Ansible modules set the protocol for hardware 14-19 only; older
    hardware rejects it, newer negotiates it.
    """
    nic = vim.vm.device.VirtualVmxnet3Vrdma(
        key=-1,
        backing=vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=dv_port(switch_uuid, portgroup_key)
        ),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(
            startConnected=True, allowGuestControl=True, connected=True
        ),
    )
    if 14 <= hardware_version <= 19:
        nic.deviceProtocol = protocol
    return nic


def vm_pvrdma_spec(
    lock_memory: bool | None,
    add: vim.vm.device.VirtualDevice | None = None,
    remove: vim.vm.device.VirtualDevice | None = None,
    edit: vim.vm.device.VirtualDevice | None = None,
) -> vim.vm.ConfigSpec:
    """ReconfigVM_Task: "Reserve all guest memory (All locked)" and the PVRDMA device change."""
    spec = vim.vm.ConfigSpec()
    if lock_memory is not None:
        spec.memoryReservationLockedToMax = lock_memory
    changes = []
    for operation, device in (("add", add), ("remove", remove), ("edit", edit)):
        if device is not None:
            changes.append(vim.vm.device.VirtualDeviceSpec(operation=operation, device=device))
    if changes:
        spec.deviceChange = changes
    return spec
