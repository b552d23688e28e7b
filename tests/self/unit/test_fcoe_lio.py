"""FCoE + LIO drivers' parsers on real captures from the emulated lab (fixtures/outputs/fcoe)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.drivers.fc_host import parse_fc_hosts
from fabqual.drivers.fcoe import colon_wwn, parse_remote_ports
from fabqual.drivers.scsi_generic import parse_sg_dd_rate, parse_sg_devices
from fabqual.errors import DriverError, ParseError
from fabqual.links.ipofc import tunnel_addresses

CAPTURES = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "fcoe"  # origin: README.md there


def capture(name: str) -> str:
    return (CAPTURES / name).read_text()


# --- pure: parsers on captures from the lab ------------------------------------------------


def test_remote_ports_initiator_sees_attached_target() -> None:
    """On the initiator the target's rport is an FCP target with a SCSI target id."""
    (port,) = parse_remote_ports(capture("rports_ini.txt"))
    assert (port.host, port.wwpn, port.scsi_target_id) == ("host0", "0x2000525400770001", 0)
    assert port.is_target


def test_remote_ports_target_sees_initiator_only() -> None:
    """On the target the initiator is not a SCSI target (id -1): is_target must say no."""
    (port,) = parse_remote_ports(capture("rports_tgt.txt"))
    assert port.scsi_target_id == -1 and not port.is_target


def test_remote_ports_without_target_id_is_a_parse_error() -> None:
    broken = capture("rports_ini.txt").replace("scsi_target_id:0", "scsi_target_id:")
    with pytest.raises(ParseError):
        parse_remote_ports(broken)


def test_fcoe_fc_host_reads_with_the_shared_parser() -> None:
    """An FCoE port parses like an HBA port: Online, WWPN 0x2000<mac>, no line rate."""
    (port,) = parse_fc_hosts(capture("fc_host_ini.txt"))
    assert port.online and port.wwpn == "0x2000525400770002" and port.speed_gbps is None


def test_sg_devices_identity() -> None:
    (device,) = parse_sg_devices(capture("sg_ini_ramdisk.txt"))
    assert (device.path, device.vendor, device.model, device.device_type, device.host) == (
        "/dev/sg0",
        "LIO-ORG",
        "RAMDISK-MCP",
        0,
        "host0",
    )


def test_sg_dd_rate_and_missing_rate() -> None:
    assert parse_sg_dd_rate(capture("sg_dd_write_128k.txt")) == (1.960131, 17.12)
    with pytest.raises(ParseError):
        parse_sg_dd_rate("65536+0 records in\n65536+0 records out\n")


def test_wwn_spellings() -> None:
    assert colon_wwn("0x2000525400770001") == "20:00:52:54:00:77:00:01"
    with pytest.raises(DriverError):
        colon_wwn("0x2000")


def test_tunnel_addresses() -> None:
    assert tunnel_addresses("10.77.0.0/30") == ("10.77.0.1", "10.77.0.2", 30)
    with pytest.raises(DriverError):
        tunnel_addresses("10.77.0.1/32")


# --- on the running lab ----------------------------------------------------------------------
