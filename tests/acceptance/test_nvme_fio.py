"""fio across every link that gives a host a block device: one body, every transport.

The device is an NVMe namespace (fc_nvme, nvmet_rdma, nvme_tcp) or a SCSI LUN
(fcp). Each row runs one workload on it and records IOPS, bandwidth and p99
completion latency against the thresholds profile. Write workloads run only on
scratch devices and verify every block they wrote (``--verify=crc32c``), so a
fabric that corrupts data fails even when fast.
"""

from __future__ import annotations

import os

import pytest

from fabqual.handles import BlockDevice
from fabqual.tools.fio import run_fio
from fabqual.topology.model import Link

RUNTIME_ENV = "FABQUAL_FIO_RUNTIME_S"  # overrides the link's fio_runtime_s (e.g. a short smoke run)
WRITES = {"write", "randwrite"}
# Region a verified write covers: written once, then read back and checked.
VERIFY_SIZE = {"4k": "4m", "128k": "32m", "1m": "64m"}


def runtime_s(link: Link) -> int:
    override = os.environ.get(RUNTIME_ENV)
    return int(override) if override else int(getattr(link.params, "fio_runtime_s", 10))


@pytest.mark.capability("block_device")
@pytest.mark.parametrize("qd", [1, 32], ids=lambda qd: f"qd={qd}")
@pytest.mark.parametrize("bs", ["4k", "128k", "1m"], ids=lambda bs: f"bs={bs}")
@pytest.mark.parametrize("rw", ["read", "write", "randread", "randwrite"], ids=lambda rw: f"rw={rw}")
def test_fio(link: Link, block_device: BlockDevice, check_metric, rw: str, bs: str, qd: int) -> None:  # type: ignore[no-untyped-def]
    """The device sustains the workload within thresholds; written data reads back intact."""
    writing = rw in WRITES
    if writing and not block_device.scratch:
        pytest.skip(f"{block_device.device} on {link.name} is not a scratch device: write workloads are not run")
    result = run_fio(
        block_device.host,
        filename=block_device.device,
        rw=rw,
        bs=bs,
        iodepth=qd,
        runtime_s=runtime_s(link),
        size=VERIFY_SIZE[bs] if writing else None,
        verify="crc32c" if writing else None,
    )
    done = result.direction(rw)
    context = {"rw": rw, "bs": bs, "qd": str(qd)}
    check_metric(link, "iops", done.iops, context=context)
    check_metric(link, "bw_mbps", done.bw_mbps, context=context, line_rate=block_device.line_rate)
    check_metric(link, "clat_p99_us", done.clat_p99_us, context=context)
