"""sg3_utils' ``sg_inq DEVICE`` (standard INQUIRY, decoded): peripheral type, vendor, product, revision.

The header line names the peripheral device type ``PDT=N`` from sg3_utils 1.46
(Debian 12, 13) and ``Device_type=N`` before (1.45, Debian 11); both are real
outputs under fixtures/outputs/sg3_utils/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fabqual.errors import ParseError

_PDT = re.compile(r"\b(?:PDT|Device_type)=(\d+)\b")


@dataclass(frozen=True)
class Inquiry:
    peripheral_type: int
    vendor: str
    product: str
    revision: str


def parse_sg_inq(text: str) -> Inquiry:
    """The identity ``sg_inq`` printed; ParseError naming what is missing."""
    pdt = _PDT.search(text)
    fields = {
        key: re.search(rf"^\s*{label}:[ \t]*(.*?)[ \t]*$", text, re.MULTILINE)
        for key, label in (
            ("vendor", "Vendor identification"),
            ("product", "Product identification"),
            ("revision", "Product revision level"),
        )
    }
    missing = [key for key, match in fields.items() if match is None] + ([] if pdt else ["PDT/Device_type"])
    if missing:
        raise ParseError("sg_inq", f"no {', '.join(missing)}", text)
    vendor, product, revision = (m[1] for m in fields.values() if m is not None)
    assert pdt is not None
    return Inquiry(int(pdt[1]), vendor, product, revision)


__all__ = ["Inquiry", "parse_sg_inq"]
