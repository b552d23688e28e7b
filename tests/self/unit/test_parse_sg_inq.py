"""sg_inq's decoded standard INQUIRY, on real outputs of sg3_utils 1.45 (Debian 11) and 1.48 (Debian 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.errors import ParseError
from fabqual.tools.sg_inq import parse_sg_inq

OUTPUTS = Path(__file__).parents[3] / "fixtures" / "outputs" / "sg3_utils"


@pytest.mark.parametrize("name", ["v1.45_sg_inq_scanner.txt", "v1.48_sg_inq_scanner.txt"])
def test_scanner_identity_from_both_header_spellings(name: str) -> None:
    """1.45 prints ``Device_type=6``, 1.48 ``PDT=6``: both read as peripheral type 6 with their strings."""
    assert (OUTPUTS / f"{name}.origin").is_file()
    inquiry = parse_sg_inq((OUTPUTS / name).read_text())
    assert (inquiry.peripheral_type, inquiry.vendor, inquiry.product) == (6, "Linux", "scsi_debug")
    assert inquiry.revision in ("0190", "0191")


@pytest.mark.parametrize(
    ("edit", "missing"),
    [
        (lambda t: t.replace("Device_type=6", "Device_type=?"), "PDT/Device_type"),
        (lambda t: t.replace(" Vendor identification: Linux   \n", ""), "vendor"),
        (lambda t: "sg_inq: error opening file: /dev/sg9: No such file or directory\n", "vendor, product, revision"),
    ],
    ids=["no-type", "no-vendor", "no-device"],
)
def test_missing_field_is_a_parse_error_naming_it(edit, missing: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=f"no {missing}"):
        parse_sg_inq(edit((OUTPUTS / "v1.45_sg_inq_scanner.txt").read_text()))
