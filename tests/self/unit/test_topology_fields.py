"""Every string a topology file can hold has a grammar, and docs/topology-fields.md lists it.

The records are walked from :class:`Topology` down, so a string field added to
any record without a check (or without its line in the table) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabqual.testing.topology_fields import string_fields

DOC = Path(__file__).resolve().parents[3] / "docs" / "topology-fields.md"

# Set by the loader, never read from the file.
NOT_FROM_THE_FILE = {"Topology.source"}


def documented() -> dict[str, str]:
    """``Record.field`` → check, from the table rows of docs/topology-fields.md."""
    rows = re.findall(r"^\| `(\w+\.\w+)` \| `([\w()]+|-)` \|", DOC.read_text(), re.MULTILINE)
    return dict(rows)


def test_every_string_field_has_a_check() -> None:
    """A value from the file reaches commands, paths and APIs only after a grammar accepted it."""
    unchecked = sorted(name for name, check in string_fields().items() if check is None)
    assert unchecked == sorted(NOT_FROM_THE_FILE)


def test_every_string_field_is_in_the_table_with_its_check() -> None:
    """docs/topology-fields.md names each field's check; a new field without its row fails here."""
    table = documented()
    actual = {name: check or "-" for name, check in string_fields().items()}
    missing = sorted(set(actual) - set(table))
    stale = sorted(set(table) - set(actual))
    wrong = sorted(
        f"{n}: table says {table[n]}, code has {actual[n]}" for n in set(table) & set(actual) if table[n] != actual[n]
    )
    assert (missing, stale, wrong) == ([], [], [])


@pytest.mark.parametrize("name", sorted(string_fields()))
def test_field_row_says_where_the_value_goes(name: str) -> None:
    row = next(line for line in DOC.read_text().splitlines() if line.startswith(f"| `{name}` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 4 and all(cells), row


# Values seen on real racks and in vendors' documentation: the grammars must keep accepting them.
REAL_VALUES = [
    ("check_device_path", "/dev/nvme1n1"),
    ("check_device_path", "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456A"),
    ("check_device_path", "/dev/disk/by-id/nvme-eui.002538b391b0e1d5"),
    ("check_device_path", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"),
    ("check_device_path", "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1"),
    ("check_nqn", "nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
    ("check_nqn", "nqn.1992-08.com.netapp:sn.0123456789abcdef:subsystem.nvme_1"),
    ("check_nqn", "nqn.2014-08.org.nvmexpress.discovery"),
    ("check_module", "nvme-fcloop"),
    ("check_module", "rdma_rxe"),
    ("check_firmware_file", "qed/qed_init_values_zipped-8.37.7.0.bin"),
    ("check_netdev", "enp59s0f0np0"),
    ("check_netdev", "eth0.100"),
    ("check_rdma_device", "mlx5_0"),
    ("check_rdma_device", "vmw_pvrdma0"),
    ("check_host", "esx1.lab.example"),
    ("check_host", "fe80::1"),
    ("check_vsphere_user", "administrator@vsphere.local"),
    ("check_vsphere_user", "VSPHERE.LOCAL\\Administrator"),
    ("check_inventory_name", "Lab DC (east)"),
    ("check_thumbprint", "9B:B2:43:0C:95:4E:1F:7C:4E:51:13:69:4F:4A:9E:05:2B:31:C3:D6"),
]


@pytest.mark.parametrize("check,value", REAL_VALUES, ids=[v for _, v in REAL_VALUES])
def test_grammars_accept_real_values(check: str, value: str) -> None:
    from fabqual.topology import grammar

    assert getattr(grammar, check)(value) is None
