"""Which tests make the smoke slice: one short row per capability, whatever the link type.

Chosen from the collected node ids by pattern (pure, no pytest import), so a link
type added later (its rows carry its own ``tr=`` id) is in the slice as soon as it
offers one of these capabilities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# One short row per capability: verified writes on an NVMe namespace, RDMA bandwidth and
# latency on an RDMA pair, ping and TEST UNIT READY across an IPoFC tunnel.
SMOKE_PATTERNS: tuple[str, ...] = (
    r"test_nvme_fio\.py::test_fio\[tr=[\w.-]+-rw=write-bs=128k-qd=1\]$",
    r"test_rdma_perftest\.py::test_bandwidth\[tr=[\w.-]+-test=ib_write_bw-size=64k\]$",
    r"test_rdma_perftest\.py::test_latency\[tr=[\w.-]+-test=ib_write_lat-size=2\]$",
    r"test_ipofc\.py::test_ping\[mtu=1500-tr=[\w.-]+\]$",
    r"test_ipofc\.py::test_sg_turs_good\[tr=[\w.-]+\]$",
)
# Short runs: the slice says whether a pair interoperates, not how fast it is.
SMOKE_ENV = {"FABQUAL_FIO_RUNTIME_S": "5"}


def select(node_ids: Iterable[str], patterns: Iterable[str] = SMOKE_PATTERNS) -> list[str]:
    """The node ids matching any pattern, in collection order."""
    compiled = [re.compile(pattern) for pattern in patterns]
    return [node for node in node_ids if any(p.search(node) for p in compiled)]


def collected_ids(pytest_output: str) -> list[str]:
    """Node ids from ``pytest --collect-only -q`` output (its summary and warnings left out)."""
    return [line.strip() for line in pytest_output.splitlines() if "::" in line and not line.startswith(" ")]


__all__ = ["SMOKE_ENV", "SMOKE_PATTERNS", "collected_ids", "select"]
