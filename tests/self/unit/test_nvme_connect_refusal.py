"""A refused ``nvme connect`` names what the host's kernel logged, not only nvme-cli's EINVAL."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from fabqual.drivers.journal import Journal
from fabqual.drivers.nvme_host import ConnectSpec, NvmeHost
from fabqual.errors import DriverError
from fabqual.testing.fake_node import FakeNode

NQN = "nqn.2024-01.io.fabqual:nvme-tcp"


@dataclass
class RefusingHost(FakeNode):
    """A host whose kernel refuses the controller and says why in its log (after fabqual's marker)."""

    kernel_says: str = ""

    def _answer(self, text: str) -> tuple[int, str]:
        if text.startswith("nvme connect"):
            return 1, "Failed to write to /dev/nvme-fabrics: Invalid argument"
        if text.startswith("dmesg"):
            markers = [m for c in self.commands if (m := re.match(r"echo '(.*)' > /dev/kmsg", c))]
            before = "[  10.0] nvme nvme0: an older line, before the connect\n"
            return 0, f"{before}[  12.1] {markers[-1].group(1)}\n{self.kernel_says}"
        return super()._answer(text)


def _connect(node: FakeNode) -> str:
    with pytest.raises(DriverError) as caught:
        NvmeHost(node, Journal())._connect(ConnectSpec("tcp", "192.168.77.1", NQN, trsvcid="4420"))
    return str(caught.value)


def test_the_kernels_reason_is_in_the_error() -> None:
    message = _connect(RefusingHost("ini", kernel_says="[  12.4] nvme nvme1: Invalid MNAN value 1024\n"))
    assert "failed: refused;" in message  # nvme-cli's own words (the fake node's stderr)
    assert message.endswith("its kernel logged: [  12.4] nvme nvme1: Invalid MNAN value 1024")
    assert "an older line" not in message


def test_without_a_kernel_line_the_error_says_what_to_check() -> None:
    message = _connect(RefusingHost("ini", kernel_says="[  12.4] eth1: link up\n"))
    assert message.endswith("check the target exports the subsystem on that address and allows this host NQN")
