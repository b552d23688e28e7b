"""The fcp link on the running lab: a scratch LUN over tcm_fc + software FCoE, found as /dev/sdX by its WWN.

One bring-up of the lab's fcp link: the disk the initiator finds carries the WWN
LIO derives from the link's unit serial, has the lab's queue limits, takes a
verified fio write, and teardown leaves LIO, FCoE, the SCSI disks and the
null_blk devices as they were. Uses the session's shared lab (tests/self/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fabqual.drivers.fcoe import fcoe_state
from fabqual.drivers.lio import lio_state
from fabqual.drivers.scsi_disk import lio_naa_wwid, scsi_disks
from fabqual.executors.base import Executor
from fabqual.handles import BlockDevice
from fabqual.links.base import LinkContext, driver_for
from fabqual.links.fcp import unit_serial
from fabqual.tools.fio import run_fio
from fabqual.topology import Topology


@pytest.fixture(scope="module")
def guests(topology: Topology) -> Iterator[dict[str, Executor]]:
    from fabqual.executors.ssh import SshExecutor

    executors = {name: SshExecutor.for_node(topology.node(name)) for name in ("tgt", "ini")}
    yield executors
    for executor in executors.values():
        executor.close()


def snapshot(tgt: Executor, ini: Executor) -> dict[str, object]:
    """What an fcp bring-up changes: LIO objects, FCoE controllers, SCSI disks, null_blk devices, modules."""
    return {
        "lio": lio_state(tgt),
        "fcoe": (fcoe_state(tgt), fcoe_state(ini)),
        "disks": scsi_disks(ini),
        # configfs items only: loading null_blk adds its "features" attribute file, which is not state
        "nullb": tgt.run(
            "ls /sys/block | grep nullb; ls -d /sys/kernel/config/nullb/*/ 2>/dev/null; true", timeout=30
        ).stdout.split(),
        "tcm_fc on ini": "tcm_fc" in ini.run("lsmod", timeout=30).stdout,
    }


def test_lun_found_by_wwn_takes_a_verified_write_and_leaves_nothing(
    topology: Topology, guests: dict[str, Executor]
) -> None:
    """The LUN is /dev/sdX with WWID naa.6001405<serial>, at max_sectors_kb 64 and queue depth 4; 4 MiB of
    crc32c-verified 128 KiB writes read back intact; teardown restores LIO, FCoE, disks and null_blk."""
    tgt, ini = guests["tgt"], guests["ini"]
    (link,) = topology.links_of("fcp")
    before = snapshot(tgt, ini)
    driver = driver_for(LinkContext(topology, link, lambda name: guests[name]))
    try:
        device = driver.up().block_device
        assert isinstance(device, BlockDevice) and device.scratch and device.host.node == "ini"
        (disk,) = [d for d in scsi_disks(ini) if d.path == device.device]
        assert disk.wwid == lio_naa_wwid(unit_serial(link.name)) and disk.vendor == "LIO-ORG"
        limits = ini.run(
            f"cat /sys/block/{disk.name}/queue/max_sectors_kb /sys/block/{disk.name}/device/queue_depth", timeout=30
        ).stdout.split()
        assert limits == ["64", "4"]
        assert device.size_bytes == 512 << 20  # the lab's 512 MB null_blk, as the initiator reads it
        result = run_fio(
            ini, filename=device.device, rw="write", bs="128k", iodepth=4, runtime_s=3, size="4m", verify="crc32c"
        )
        assert result.direction("write").iops > 0
    finally:
        driver.down()
    assert snapshot(tgt, ini) == before
