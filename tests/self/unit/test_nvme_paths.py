"""A path device's completed I/O from /sys/block/X/stat, on a real multipath path device of the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.drivers.nvme_paths import BlockStat, parse_block_stat
from fabqual.errors import ParseError

SYSFS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "sysfs"


def test_path_device_stat_of_a_guest() -> None:
    """17 fields on 6.1: reads completed first (48), writes completed fifth (0: not the 1796 ms of read ticks)."""
    assert parse_block_stat((SYSFS / "nvme_path_stat_ini.txt").read_text()) == BlockStat(reads=48, writes=0)


def test_older_kernels_print_eleven_fields() -> None:
    assert parse_block_stat("1 0 8 0 2 0 16 0 0 0 0\n") == BlockStat(reads=1, writes=2)


@pytest.mark.parametrize("text", ["", "1 2 3", "a b c d e f g h i j k", "cat: /sys/block/x/stat: No such file"])
def test_anything_else_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="block stat"):
        parse_block_stat(text)
