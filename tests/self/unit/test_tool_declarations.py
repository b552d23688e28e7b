"""Each tool module declares its metrics and its doctor probe; thresholds, doctor and report read them.

No node is needed: the doctor's probe is checked on the recording fake node, whose
version answers are those of Debian 12's tools (fio-3.33, iperf 3.12).
"""

from __future__ import annotations

import pytest

from fabqual.doctor import Requirement, check_requirement
from fabqual.report.inventory import INVENTORY_SCRIPT
from fabqual.testing.fake_node import FakeNode
from fabqual.thresholds import METRICS, default_directory, load_thresholds
from fabqual.tools import fabric_counters, fio, iperf3, perftest, ping
from fabqual.tools.declare import metrics, probe_for, specs


def test_every_tool_module_declares_a_spec_and_no_metric_twice() -> None:
    assert [s.name for s in specs()] == ["fio", "perftest", "iperf3", "ping", "fabric_counters"]
    names = [m.name for s in specs() for m in s.metrics]
    assert len(names) == len(set(names)), names


def test_thresholds_take_units_and_directions_from_the_tools() -> None:
    """The thresholds loader knows exactly the declared metrics, each with the declared unit and direction."""
    assert {name: (m.unit, m.better) for name, m in metrics().items()} == METRICS
    assert METRICS["iops"] == ("IOPS", ">=") and METRICS["rtt_max_ms"] == ("ms", "<=")
    assert set(METRICS) == {*fio.SPEC.metric_names, *perftest.SPEC.metric_names, *iperf3.SPEC.metric_names}.union(
        ping.SPEC.metric_names, fabric_counters.SPEC.metric_names
    )


@pytest.mark.parametrize("profile", sorted(p.stem for p in default_directory().glob("*.yaml")))
def test_shipped_profiles_name_only_declared_metrics(profile: str) -> None:
    thresholds = load_thresholds(profile)
    assert {metric for _link, metric in thresholds.entries} <= set(metrics())


@pytest.mark.parametrize(
    ("executable", "probe"),
    [("fio", "fio --version"), ("iperf3", "iperf3 --version"), ("ib_write_bw", "command -v ib_write_bw"),
     ("ping", "command -v ping")],
)  # fmt: skip
def test_the_doctor_runs_the_probe_the_tool_declares(executable: str, probe: str) -> None:
    node = FakeNode("n")
    assert probe_for(executable) is not None
    assert check_requirement(node, Requirement("tool", executable)) is None
    assert node.commands == [probe]


def test_a_declared_minimum_version_is_enforced_with_the_declared_package() -> None:
    """iperf3 declares >= 3.0: an older one is refused naming the package to upgrade."""
    old = FakeNodeAnswering("iperf 2.0.13 (cJSON 1.5.2)")
    assert check_requirement(old, Requirement("tool", "iperf3")) == (
        "iperf3 2.0 is too old (need >= 3.0)",
        "upgrade iperf3",
    )


class FakeNodeAnswering(FakeNode):
    """A fake node whose every answer is one fixed text (an old tool's version line)."""

    def __init__(self, answer: str) -> None:
        super().__init__("old")
        self.answer = answer

    def _answer(self, text: str) -> tuple[int, str]:
        return 0, self.answer


def test_the_report_inventory_asks_each_declared_tool_for_its_version() -> None:
    for spec in specs():
        if spec.version:
            assert f"\nv {spec.name} {spec.version}\n" in INVENTORY_SCRIPT
    assert INVENTORY_SCRIPT.rstrip().endswith("exit 0")
