"""Line rates without the lab: combined over paths, read from captured sysfs files, and a rate that
cannot be read named with its node and port wherever a threshold needs it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fabqual.drivers.fc_host import parse_fc_hosts
from fabqual.drivers.port_rate import fc_rate
from fabqual.errors import ThresholdError
from fabqual.line_rate import LineRate, PortRate
from fabqual.thresholds import ib_line_rate_gbps, load_thresholds, net_line_rate_gbps

SYSFS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "sysfs"


def port(node: str, name: str, gbps: float | None) -> PortRate:
    return PortRate(node, name, gbps, "test" if gbps else "/sys/class/net/x/speed = -1: no speed")


def test_slowest_and_sum_over_paths_count_a_shared_port_once() -> None:
    """Two paths over one port per end carry one port's rate; over two ports per end, twice the slower side."""
    shared = LineRate(((port("t", "p1", 25), port("h", "p1", 25)), (port("t", "p1", 25), port("h", "p1", 25))))
    assert shared.gbps("slowest") == 25 and shared.gbps("sum") == 25
    two = LineRate(((port("t", "p1", 25), port("h", "p1", 10)), (port("t", "p2", 25), port("h", "p2", 25))))
    assert two.gbps("slowest") == 10
    assert two.gbps("sum") == 35  # host side 10 + 25 is the narrower side


def test_an_unreadable_port_is_named_with_node_and_reason() -> None:
    rate = LineRate.one_path(port("tgt", "netdev eth1", 25), port("ini", "netdev eth9", None))
    with pytest.raises(ThresholdError, match=r"line rate of ini netdev eth9 could not be read: .*no speed"):
        rate.gbps()


def profile(tmp_path: Path) -> Path:
    (tmp_path / "lab.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            profile: lab
            links:
              nvmet_rdma:
                bw_mbps:
                  - min_fraction_of_line_rate: 0.5
                    unit: MB/s
                    note: slowest port
                  - when: {bs: 1m}
                    min_fraction_of_line_rate: 0.5
                    line_rate: sum
                    unit: MB/s
                    note: all paths together
            """
        )
    )
    return tmp_path


def test_profile_entry_says_how_paths_add_up(tmp_path: Path) -> None:
    """``line_rate: sum`` takes every path's ports; the default is the slowest port."""
    thresholds = load_thresholds("lab", profile(tmp_path))
    rate = LineRate(((port("t", "p1", 8), port("h", "p1", 8)), (port("t", "p2", 8), port("h", "p2", 8))))
    assert thresholds.bound("nvmet_rdma", "bw_mbps", {"bs": "4k"}, line_rate=rate).threshold == 0.5 * 8 * 125
    assert thresholds.bound("nvmet_rdma", "bw_mbps", {"bs": "1m"}, line_rate=rate).threshold == 0.5 * 16 * 125


def test_a_fraction_of_an_unreadable_rate_names_the_port(tmp_path: Path) -> None:
    thresholds = load_thresholds("lab", profile(tmp_path))
    rate = LineRate.one_path(port("tgt", "fc_host host3 (0x21)", None))
    with pytest.raises(
        ThresholdError, match=r"0\.5 of the line rate, but the line rate is unknown: the line rate of tgt fc_host host3"
    ):
        thresholds.bound("nvmet_rdma", "bw_mbps", {}, line_rate=rate)


def test_bad_line_rate_key_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(
        "version: 1\nprofile: lab\nlinks:\n  nvmet_rdma:\n    bw_mbps:\n"
        "      - {min_fraction_of_line_rate: 0.5, line_rate: mean, unit: MB/s, note: n}\n"
    )
    with pytest.raises(Exception, match=r"bw_mbps\[0\]\.line_rate.*'mean'; expected slowest or sum"):
        load_thresholds("lab", tmp_path)


def test_lab_speeds_captured_in_the_guest() -> None:
    """The files read in a lab guest with the data NIC at 25000 Mb/s (fixtures/outputs/sysfs/README.md)."""
    assert net_line_rate_gbps((SYSFS / "virtio_eth1_speed_25000.txt").read_text()) == 25.0
    assert ib_line_rate_gbps((SYSFS / "rxe0_port1_rate_25g.txt").read_text()) == 25.0
    (fcoe,) = parse_fc_hosts((SYSFS / "fcoe_fc_host_25g.txt").read_text())
    rate = fc_rate("tgt", fcoe)
    assert rate.gbps == pytest.approx(25.0) and "FCoE" in rate.read  # Ethernet's rate, not FC's 8b/10b-era naming


def test_fc_port_speed_is_data_rate_and_unknown_is_a_reason() -> None:
    dump = (
        "/sys/class/fc_host/host3/node_name:0x20000024ff7c1a2b\n/sys/class/fc_host/host3/port_name:0x21000024ff7c1a2b\n"
        "/sys/class/fc_host/host3/port_state:{state}\n/sys/class/fc_host/host3/speed:{speed}\n"
    )
    (up,) = parse_fc_hosts(dump.format(state="Online", speed="16 Gbit"))
    assert fc_rate("tgt", up).gbps == pytest.approx(12.8)
    (down,) = parse_fc_hosts(dump.format(state="Linkdown", speed="unknown"))
    gone = fc_rate("tgt", down)
    assert gone.gbps is None and "Linkdown" in gone.read and "host3" in gone.port
