"""GID index selection by type (RoCE v2, IPv4-mapped), on sysfs dumps.

perftest's ``-x`` must name the right GID on both ends; the index differs per
NIC and driver, so it is chosen from the GID table, never hard-coded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.drivers.rdma import parse_gid_table, parse_port_state, parse_rate, select_gid
from fabqual.errors import LabError, ParseError

SYSFS = Path(__file__).parents[3] / "fixtures" / "outputs" / "sysfs"


def dump(name: str) -> str:
    return (SYSFS / name).read_text()


def test_hardware_table_picks_roce_v2_ipv4_not_v1_or_link_local() -> None:
    """Of four populated GIDs (v1/v2 link-local, v1/v2 IPv4) only index 3 is RoCE v2 with an IPv4 address."""
    entries = parse_gid_table(dump("gids_roce_v1_v2_hw.txt"))
    assert [e.index for e in entries] == [0, 1, 2, 3]  # the all-zero slot 4 is dropped
    chosen = select_gid(entries, "qedr0", 1)
    assert (chosen.index, chosen.type, chosen.ipv4, chosen.netdev) == (3, "RoCE v2", "192.168.50.1", "ens2f0")
    assert select_gid(entries, "qedr0", 1, address="192.168.50.1").index == 3


def test_address_that_has_no_gid_is_a_lab_error_listing_the_table() -> None:
    entries = parse_gid_table(dump("gids_roce_v1_v2_hw.txt"))
    with pytest.raises(
        LabError, match=r"qedr0 port 1 has no RoCE v2 IPv4-mapped GID for 10\.0\.0\.9 \(GIDs: 0=IB/RoCE v1"
    ):
        select_gid(entries, "qedr0", 1, address="10.0.0.9")


def test_rxe_table_from_the_lab() -> None:
    """rxe (the emulated lab): index 1 is the IPv4-mapped RoCE v2 GID of the data address."""
    for name, address in (("gids_rxe_tgt.txt", "192.168.77.1"), ("gids_rxe_ini.txt", "192.168.77.2")):
        if not (SYSFS / name).exists():
            pytest.skip(f"{name} not captured")
        chosen = select_gid(parse_gid_table(dump(name)), "rxe0", 1, address=address)
        assert (chosen.index, chosen.type, chosen.ipv4) == (1, "RoCE v2", address)


# Shape of ibv_devinfo on a QL41262 (qedr), written by hand: no such NIC here; the lab rxe capture is tested below.
IBV_DEVINFO_ACTIVE = """hca_id:\tqedr0
\ttransport:\t\t\tInfiniBand (0)
\tfw_ver:\t\t\t\t8.59.1.0
\tphys_port_cnt:\t\t\t1
\t\tport:\t1
\t\t\tstate:\t\t\tPORT_ACTIVE (4)
\t\t\tmax_mtu:\t\t4096 (5)
\t\t\tactive_mtu:\t\t1024 (3)
\t\t\tlink_layer:\t\tEthernet
"""


def test_port_state_and_mtu() -> None:
    """The `state:` line decides PORT_ACTIVE; active_mtu is read in bytes."""
    assert parse_port_state(IBV_DEVINFO_ACTIVE) == ("PORT_ACTIVE", 1024)
    assert parse_port_state(IBV_DEVINFO_ACTIVE.replace("PORT_ACTIVE (4)", "PORT_DOWN (1)"))[0] == "PORT_DOWN"
    with pytest.raises(ParseError, match="no 'state: PORT_"):
        parse_port_state("Failed to get IB_DEVICES list: No such file or directory")


@pytest.mark.parametrize(
    ("text", "gbps"), [("25 Gb/sec (1X EDR)\n", 25.0), ("2.5 Gb/sec (1X SDR)", 2.5), ("100 Gb/sec (4X EDR)", 100.0)]
)
def test_port_rate(text: str, gbps: float) -> None:
    assert parse_rate(text) == gbps


def test_port_state_of_lab_rxe() -> None:
    """ibv_devinfo captured on the lab's rxe0 (see the .origin file)."""
    assert parse_port_state(dump("ibv_devinfo_rxe_ini.txt")) == ("PORT_ACTIVE", 1024)
