# mypy: disable-error-code="union-attr"
# (pyvmomi types every data-object field as Optional; these tests read fields they just set.)
"""Contract tests on the request objects for calls that need a real vCenter/ESXi.

VMware's simulator cannot run these (AddVirtualNic/UpdateVirtualNic,
UpdateNetworkConfig, uplink pnic backing, kernel module options, software
packages, rdmaDevice); ESXi itself cannot run on this machine. So the requests
fabqual builds for them are checked here: their pyvmomi types, the fields a
vCenter reads, and that they serialise as SOAP for API 7.0.3 with the PVRDMA
fields intact. The ESXi doctor checks run on hand-built host stand-ins holding
real pyvmomi data objects and faults (no ESXi can exist here), plus once
against vcsim for the "API not available" lines.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace
from typing import Any

import pytest
from pyVmomi import vim, vmodl
from pyVmomi.SoapAdapter import Serialize

from fabqual.vsphere import esxi, specs, vcsim

API = "vim.version.v7_0_3_0"


def wire(obj: Any, version: str = API) -> str:
    return Serialize(obj, version=version).decode()


def test_dvs_create_spec_one_uplink_7_0_and_mtu() -> None:
    spec = specs.dvs_create_spec("DSwitch_PVRDMA", "7.0.3", 9000)
    assert isinstance(spec.configSpec, vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec)
    assert spec.configSpec.maxMtu == 9000
    assert list(spec.configSpec.uplinkPortPolicy.uplinkPortName) == ["Uplink 1"]  # PVRDMA: no teaming
    assert spec.productInfo.version == "7.0.3"
    text = wire(spec)
    assert "<maxMtu>9000</maxMtu>" in text and "<version>7.0.3</version>" in text


def test_host_member_add_with_pnic_backing() -> None:
    host = vim.HostSystem("host-1")
    spec = specs.host_member_spec("3", "add", host, "vmnic4", "dvportgroup-9")
    member = spec.host[0]
    assert spec.configVersion == "3" and member.operation == "add" and member.host == host
    pnic = member.backing.pnicSpec[0]
    assert (pnic.pnicDevice, pnic.uplinkPortgroupKey) == ("vmnic4", "dvportgroup-9")
    assert "<pnicDevice>vmnic4</pnicDevice>" in wire(spec)
    removal = specs.host_member_spec("4", "remove", host).host[0]
    assert removal.operation == "remove" and removal.backing is None


def test_vmknic_spec_on_dv_port_with_static_ip() -> None:
    spec = specs.vmknic_spec("50 1a", "dvportgroup-9", "192.168.50.11/24", 9000)
    assert isinstance(spec, vim.host.VirtualNic.Specification)
    assert (spec.distributedVirtualPort.switchUuid, spec.distributedVirtualPort.portgroupKey) == (
        "50 1a",
        "dvportgroup-9",
    )
    assert (spec.ip.dhcp, spec.ip.ipAddress, spec.ip.subnetMask) == (False, "192.168.50.11", "255.255.255.0")
    assert spec.mtu == 9000
    assert specs.ip_config("10.0.0.2/30").subnetMask == "255.255.255.252"
    assert "<ipAddress>192.168.50.11</ipAddress>" in wire(spec)


def _standard_switch() -> tuple[vim.host.VirtualSwitch, vim.host.PortGroup]:
    vss = vim.host.VirtualSwitch(
        name="vSwitch1",
        mtu=9000,
        spec=vim.host.VirtualSwitch.Specification(
            numPorts=128, bridge=vim.host.VirtualSwitch.BondBridge(nicDevice=["vmnic4", "vmnic5"])
        ),
    )
    pg = vim.host.PortGroup(
        spec=vim.host.PortGroup.Specification(
            name="PVRDMA-vss", vlanId=0, vswitchName="vSwitch1", policy=vim.host.NetworkPolicy()
        )
    )
    return vss, pg


def test_migration_moves_pnic_and_vmknic_in_one_update() -> None:
    """The seeds' layout (vmk1 and the 25G pnic on a standard switch) moves in one UpdateNetworkConfig."""
    vss, pg = _standard_switch()
    config = specs.vmknic_migration_config("vmk1", "50 1a", "dvportgroup-9", "vmnic4", "dvportgroup-8", vss, pg)
    assert isinstance(config, vim.host.NetworkConfig)
    vswitch = config.vswitch[0]
    assert (vswitch.changeOperation, vswitch.name) == ("edit", "vSwitch1")
    assert list(vswitch.spec.bridge.nicDevice) == ["vmnic5"]  # the RDMA pnic leaves, the others stay
    proxy = config.proxySwitch[0]
    assert (proxy.changeOperation, proxy.uuid) == ("edit", "50 1a")
    assert proxy.spec.backing.pnicSpec[0].pnicDevice == "vmnic4"
    vnic = config.vnic[0]
    assert (vnic.changeOperation, vnic.device, vnic.portgroup) == ("edit", "vmk1", "")
    assert vnic.spec.distributedVirtualPort.portgroupKey == "dvportgroup-9"
    assert (config.portgroup[0].changeOperation, config.portgroup[0].spec.name) == ("remove", "PVRDMA-vss")
    wire(config)  # serialisable as a whole


def test_vmknic_restore_points_back_to_the_old_portgroup() -> None:
    old = vim.host.VirtualNic.Specification(ip=specs.ip_config("192.168.50.11/24"), mtu=1500)
    config = specs.vmknic_restore_config("vmk1", old, "PVRDMA-vss")
    assert (config.vnic[0].device, config.vnic[0].portgroup, config.vnic[0].spec.mtu) == ("vmk1", "PVRDMA-vss", 1500)


def test_advanced_option_is_a_string_and_untag_is_empty() -> None:
    (tag,) = specs.advanced_option("vmk1")
    assert (tag.key, tag.value) == ("Net.PVRDMAVmknic", "vmk1")
    assert specs.advanced_option("")[0].value == ""
    assert 'xsi:type="xsd:string"' in wire(tag)


@pytest.mark.parametrize(("hw", "protocol"), [(13, None), (14, "rocev2"), (19, "rocev2"), (20, None)])
def test_pvrdma_nic_on_dv_port_and_protocol_by_hardware(hw: int, protocol: str | None) -> None:
    nic = specs.pvrdma_nic("50 1a", "dvportgroup-9", hw)
    assert isinstance(nic, vim.vm.device.VirtualVmxnet3Vrdma)
    assert isinstance(nic.backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo)
    assert (nic.backing.port.switchUuid, nic.backing.port.portgroupKey) == ("50 1a", "dvportgroup-9")
    assert nic.key < 0 and nic.connectable.startConnected
    assert nic.deviceProtocol == protocol


def test_vm_spec_locks_memory_and_adds_the_nic_and_keeps_protocol_on_7_0_3() -> None:
    nic = specs.pvrdma_nic("50 1a", "dvportgroup-9", 19)
    spec = specs.vm_pvrdma_spec(True, add=nic)
    assert isinstance(spec, vim.vm.ConfigSpec)
    assert spec.memoryReservationLockedToMax is True
    assert [(c.operation, type(c.device)) for c in spec.deviceChange] == [("add", vim.vm.device.VirtualVmxnet3Vrdma)]
    assert "<deviceProtocol>rocev2</deviceProtocol>" in wire(spec)
    # Why vcsim runs with API 7.0.3.0: negotiated as 6.5, the field silently disappears.
    assert "deviceProtocol" not in wire(spec, "vim.version.version11")
    undo = specs.vm_pvrdma_spec(False, remove=nic)
    assert undo.memoryReservationLockedToMax is False and undo.deviceChange[0].operation == "remove"
    assert specs.vm_pvrdma_spec(None).deviceChange == []


# -- ESXi doctor checks ----------------------------------------------------------------------


def fake_host(
    packages: list[vim.host.SoftwarePackage] | Exception,
    options: str | Exception,
    rdma: list[vim.host.RdmaDevice],
) -> Any:
    """A stand-in for a real ESXi HostSystem (none can run here) answering with real pyvmomi objects."""

    def fetch() -> list[vim.host.SoftwarePackage]:
        if isinstance(packages, Exception):
            raise packages
        return packages

    def query(name: str) -> str:
        if isinstance(options, Exception):
            raise options
        assert name == "qedentv"
        return options

    return SimpleNamespace(
        name="esx01",
        configManager=SimpleNamespace(
            imageConfigManager=SimpleNamespace(FetchSoftwarePackages=fetch),
            kernelModuleSystem=SimpleNamespace(QueryConfiguredModuleOptionString=query),
        ),
        config=SimpleNamespace(network=SimpleNamespace(rdmaDevice=rdma)),
    )


def package(name: str, version: str, vendor: str = "QLC") -> vim.host.SoftwarePackage:
    # Version strings as seen in ESXi 7.0U3 image lists (research note §1.6).
    return vim.host.SoftwarePackage(name=name, version=version, vendor=vendor, type="bootbank")


def rdma_device(state: str) -> vim.host.RdmaDevice:
    return vim.host.RdmaDevice(
        key="key-vim.host.RdmaDevice-vmrdma0",
        device="vmrdma0",
        driver="qedrntv",
        backing=vim.host.RdmaDevice.PnicBacking(pairedUplink="key-vim.host.PhysicalNic-vmnic4"),
        connectionInfo=vim.host.RdmaDevice.ConnectionInfo(state=state, mtu=4096, speedInMbps=25000),
    )


def test_ready_host_has_no_problems() -> None:
    host = fake_host(
        [package("qedentv", "3.70.35.0-1OEM.700.1.0.15843807"), package("qedrntv", "3.70.33.0-1OEM.700.1.0.15843807")],
        "enable_roce=1",
        [rdma_device("active")],
    )
    assert esxi.check_esxi_host(host) == []


def test_missing_old_vib_roce_off_and_down_device_are_actionable_lines() -> None:
    host = fake_host([package("qedentv", "3.11.16.0-1OEM", "QLC")], "num_queues=4 enable_roce=0", [rdma_device("down")])
    problems = esxi.check_esxi_host(host)
    assert len(problems) == 4, problems
    assert any("VIB qedentv is 3.11.16.0-1OEM" in p and "older than 3.40" in p for p in problems)
    assert any("VIB qedrntv is not installed" in p for p in problems)
    # esxcfg-module -s replaces the whole option string: the suggested command keeps num_queues.
    assert any("esxcfg-module -s 'num_queues=4 enable_roce=1' qedentv" in p for p in problems)
    assert any("vmrdma0 (qedrntv) is down" in p for p in problems)
    assert all("\n" not in p and p.startswith("host esx01: ") for p in problems)


def test_module_not_loaded_and_no_rdma_device() -> None:
    host = fake_host(
        [package("qedentv", "3.40.5.53-22vmw"), package("qedrntv", "3.40.5.53-18vmw")], vim.fault.NotFound(), []
    )
    problems = esxi.check_esxi_host(host)
    assert any("kernel module qedentv is not loaded" in p for p in problems)
    assert any("no RDMA device" in p for p in problems)


@pytest.mark.skipif(shutil.which("go") is None, reason="vcsim needs Debian's golang-go and govmomi source")
def test_against_vcsim_the_missing_apis_are_named() -> None:
    """vcsim has no image config or kernel module system: the doctor says how to check by hand instead."""
    from fabqual.vsphere.vcenter import VCenterDriver

    with vcsim.running_vcsim() as sim:
        driver = VCenterDriver(sim.address, sim.port, sim.user, sim.password, ca_file=str(sim.cert_path))
        driver.connect()
        try:
            content = driver.service_instance.RetrieveContent()
            host = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True).view[0]
            problems = esxi.check_esxi_host(host)
        finally:
            driver.close()
    assert any("cannot list installed VIBs" in p and "ManagedObjectNotFound" in p for p in problems)
    assert any("esxcli system module parameters list -m qedentv" in p for p in problems)
    assert any("no RDMA device" in p for p in problems)


def test_unexpected_fault_type_is_still_a_line() -> None:
    host = fake_host(vmodl.fault.SystemError(msg="boom"), "enable_roce=1", [rdma_device("active")])
    assert esxi.check_esxi_host(host) == [
        "host esx01: cannot list installed VIBs through the API (SystemError: boom); "
        "check with `esxcli software vib list | grep -E 'qedentv|qedrntv'`"
    ]
