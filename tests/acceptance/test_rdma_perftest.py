"""perftest across every link that offers two RDMA endpoints (nvmet_rdma, pvrdma).

Bandwidth tests sweep message sizes one size per call (perftest keeps only the
last size in its report); latency tests record the typical (median) and p99
one-way latency. The GID index on each side is the one the link driver chose
by type (RoCE v2, IPv4-mapped), never a hard-coded ``-x``.
"""

from __future__ import annotations

import os

import pytest

from fabqual.handles import RdmaPair
from fabqual.topology.model import Link

ITERATIONS_ENV = "FABQUAL_PERFTEST_ITERATIONS"  # emulated links are slow: keep runs short there


def iterations(link: Link, default_hw: int = 5000, default_emulated: int = 200) -> int:
    override = os.environ.get(ITERATIONS_ENV)
    return int(override) if override else (default_emulated if link.emulated else default_hw)


def _run(rdma_pair: RdmaPair, test: str, size: int, link: Link):  # type: ignore[no-untyped-def]
    return rdma_pair.perftest(test, size=size, iterations=iterations(link))


def _size_id(size: int) -> str:
    return f"size={size // 1024}k" if size >= 1024 else f"size={size}"


@pytest.mark.capability("rdma_pair")
@pytest.mark.parametrize("size", [4096, 65536, 1048576], ids=_size_id)
@pytest.mark.parametrize("test", ["ib_write_bw", "ib_read_bw", "ib_send_bw"], ids=lambda t: f"test={t}")
def test_bandwidth(link: Link, rdma_pair: RdmaPair, check_metric, test: str, size: int) -> None:  # type: ignore[no-untyped-def]
    """Bandwidth at this message size reaches the profile's floor (a fraction of the port rate on hardware)."""
    result = _run(rdma_pair, test, size, link)
    check_metric(
        link, "bw_gbps", result.bw_gbps, context={"test": test, "size": str(size)}, line_rate=rdma_pair.line_rate
    )


@pytest.mark.capability("rdma_pair")
@pytest.mark.parametrize("size", [2, 4096], ids=_size_id)
@pytest.mark.parametrize("test", ["ib_write_lat", "ib_send_lat"], ids=lambda t: f"test={t}")
def test_latency(link: Link, rdma_pair: RdmaPair, check_metric, test: str, size: int) -> None:  # type: ignore[no-untyped-def]
    """Typical and p99 one-way latency at this size stay under the profile's bounds."""
    result = _run(rdma_pair, test, size, link)
    context = {"test": test, "size": str(size)}
    check_metric(link, "lat_typical_us", result.lat_typical_us, context=context)
    check_metric(link, "lat_p99_us", result.lat_p99_us, context=context)
