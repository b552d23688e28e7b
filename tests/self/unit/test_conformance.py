"""The conformance framework: profile section, marker, verdict that counts mandatory cases only, report table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fabqual.conformance.fabric import parse_address
from fabqual.drivers.nvme_discovery import parse_discovery_log
from fabqual.errors import ParseError, ThresholdError, TopologyError
from fabqual.report.document import conformance_section
from fabqual.results.run import conformance_rows, link_type_verdicts
from fabqual.thresholds import default_directory, load_thresholds
from tests.self.local_topology import LOCAL_RACK

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parents[3]
OUTPUTS = ROOT / "fixtures" / "outputs" / "nvme-cli"

PROFILE = """
version: 1
profile: {name}
links:
  fc_nvme:
    iops: [{{min: 1, unit: IOPS, note: test}}]
conformance:
{section}
"""

GOOD = """
  discovery.referrals:
    level: mandatory
    note: spec
  discovery.persistent_aen:
    level: informational
    note: judgment
    times:
      aen_s: {max: 30, note: measured}
"""


def _profile(tmp_path: Path, section: str, name: str = "mine") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(PROFILE.format(name=name, section=section))
    return path


def test_profile_section_gives_levels_and_time_bounds(tmp_path: Path) -> None:
    """Each case's level, note and time bounds are read; a case missing is one error naming the profile file."""
    thresholds = load_thresholds(str(_profile(tmp_path, GOOD)))
    assert thresholds.case_policy("discovery.referrals").mandatory
    aen = thresholds.case_policy("discovery.persistent_aen")
    assert (aen.level, aen.times["aen_s"].maximum) == ("informational", 30.0)
    with pytest.raises(ThresholdError, match=r"no conformance entry for case auth\.dhchap; add .*mine\.yaml"):
        thresholds.case_policy("auth.dhchap")


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("  Discovery.x: {level: mandatory, note: n}", "conformance.Discovery.x", "not <category>.<name>"),
        ("  discovery.x: {level: maybe, note: n}", "conformance.discovery.x.level", "mandatory or informational"),
        ("  discovery.x: {level: mandatory}", "conformance.discovery.x.note", "say why"),
        ("  discovery.x: {level: mandatory, note: n, times: {aen: {max: 3, note: n}}}", "times.aen", "ending in _s"),
        ("  discovery.x: {level: mandatory, note: n, times: {aen_s: {max: 0, note: n}}}", "aen_s.max", "positive"),
        ("  discovery.x: {level: mandatory, note: n, bound: 3}", "conformance.discovery.x.bound", "unknown key"),
    ],
)
def test_bad_profile_section_is_one_line_naming_the_key(tmp_path: Path, section: str, key: str, message: str) -> None:
    """A wrong level, name, note or bound fails at load, naming the file and the key."""
    with pytest.raises(TopologyError) as raised:
        load_thresholds(str(_profile(tmp_path, section)))
    assert key in str(raised.value) and message in str(raised.value) and "mine.yaml" in str(raised.value)


def test_every_case_in_the_suite_has_a_level_in_every_shipped_profile() -> None:
    """A case added to tests/acceptance without a profile entry would error on every rack: caught here."""
    cases = set()
    for path in (ROOT / "tests" / "acceptance").glob("test_*.py"):
        cases |= set(re.findall(r'conformance\(case="([^"]+)"', path.read_text()))
    assert cases, "no conformance cases found in tests/acceptance"
    for profile in sorted(default_directory().glob("*.yaml")):
        thresholds = load_thresholds(profile.stem)
        missing = sorted(case for case in cases if case not in thresholds.conformance)
        assert not missing, f"{profile.name} has no conformance entry for {missing}"


def _test(outcome: str, level: str | None, case: str = "discovery.x", link: str = "fc0") -> dict[str, object]:
    conformance = {"case": case, "category": "Discovery", "level": level} if level else None
    return {
        "nodeid": f"t::{case}[{link}]",
        "link": link,
        "link_type": "fc_nvme",
        "outcome": outcome,
        "reason": "why" if outcome != "passed" else "",
        "lost_nodes": [],
        "conformance": conformance,
    }


def test_an_informational_failure_is_shown_not_counted() -> None:
    """Failed informational case: verdict stays PASS, counted apart; a failed mandatory case fails the link."""
    tests = [_test("passed", "mandatory", "discovery.a"), _test("failed", "informational", "discovery.b")]
    fc = link_type_verdicts(tests, ["fc_nvme"])["fc_nvme"]
    assert (fc["verdict"], fc["failed"], fc["informational_failed"], fc["run"]) == ("PASS", 0, 1, 2)
    tests.append(_test("failed", "mandatory", "discovery.c"))
    assert link_type_verdicts(tests, ["fc_nvme"])["fc_nvme"]["verdict"] == "FAIL"


def test_conformance_table_per_link_with_times() -> None:
    """Rows per link carry case, level, verdict, whether it counts, and the times measured for that case."""
    tests = [_test("passed", "mandatory", "discovery.a"), _test("failed", "informational", "discovery.b", "roce0")]
    metric = {"test": "t::discovery.a[fc0]", "metric": "aen_s", "value": 1.5, "unit": "s", "threshold": 30.0}
    metrics = [{**metric, "passed": True, "context": {"case": "discovery.a"}}]
    rows = conformance_rows([*tests, _test("passed", None)], metrics)
    assert [(r["link"], r["case"], r["verdict"], r["counted"]) for r in rows] == [
        ("fc0", "discovery.a", "PASS", True),
        ("roce0", "discovery.b", "FAIL", False),
    ]
    assert rows[0]["times"][0]["value"] == 1.5
    html = conformance_section({"conformance": rows})
    assert "<h3>fc0 (fc_nvme)</h3>" in html and "aen_s 1.5 s (&lt;= 30)" in html and "FAIL (not counted)" in html


@pytest.mark.parametrize(
    ("name", "genctr", "subsystems"),
    [
        ("v2.3_discover_rdma.json", 8, {"nqn.2024-01.io.fabqual:nvmet-rdma"}),
        ("v1.12_discover_tcp.txt", 3, {"nqn.2026-12.org.fabqual:parsers-capture"}),
    ],
)
def test_discovery_log_generation_counter_from_real_outputs(name: str, genctr: int, subsystems: set[str]) -> None:
    """GENCTR and the offered subsystems from nvme-cli 2.3 JSON and 1.12 text (origins beside the files)."""
    log = parse_discovery_log((OUTPUTS / name).read_text())
    assert (log.genctr, log.subsystems()) == (genctr, subsystems)


def test_discovery_log_without_a_counter_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="genctr"):
        parse_discovery_log('{"records": []}')


def test_controller_address_as_the_kernel_prints_it() -> None:
    """sysfs/nvme-cli addresses of rdma (with src_addr) and fc controllers."""
    assert parse_address("traddr=192.168.77.1,trsvcid=4420,src_addr=192.168.77.2") == {
        "traddr": "192.168.77.1",
        "trsvcid": "4420",
        "src_addr": "192.168.77.2",
    }
    assert parse_address("traddr=nn-0x1:pn-0x2,host_traddr=nn-0x3:pn-0x4")["host_traddr"] == "nn-0x3:pn-0x4"


MARKED = """
import pytest

@pytest.mark.conformance(case="discovery.a", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_a(link, conformance):
    conformance.time("aen_s", 2.0)

@pytest.mark.conformance(case="discovery.b", category="Discovery")
@pytest.mark.capability("nvme_namespace")
def test_b(link, conformance):
    assert False, "the target did not do it"
"""


def test_a_session_records_levels_times_and_the_verdict(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real pytest session: levels from the profile, a time checked against its bound, the informational miss shown."""
    monkeypatch.setenv("FABQUAL_REPORTS_DIR", str(pytester.path / "reports"))
    (pytester.path / "rack.yaml").write_text(LOCAL_RACK)
    section = """
  discovery.a: {level: mandatory, note: n, times: {aen_s: {max: 30, note: n}}}
  discovery.b: {level: informational, note: n}
"""
    profile = _profile(pytester.path, section)
    pytester.makepyfile(test_cases=MARKED)
    result = pytester.runpytest("--topology", "rack.yaml", "--profile", str(profile), "-m", "fc_nvme")
    result.assert_outcomes(passed=1, failed=1)
    results = json.loads((pytester.path / "reports" / "results-latest.json").read_text())
    fc = results["verdicts"]["fc_nvme"]
    assert (fc["verdict"], fc["informational_failed"]) == ("PASS", 1)
    rows = {r["case"]: r for r in results["conformance"]}
    assert rows["discovery.a"]["times"][0]["value"] == 2.0 and rows["discovery.b"]["level"] == "informational"


def test_a_malformed_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A category that does not name the case's prefix stops the run with the test's id."""
    (pytester.path / "rack.yaml").write_text(LOCAL_RACK)
    pytester.makepyfile(
        test_bad="""
import pytest
@pytest.mark.conformance(case="discovery.a", category="Access control")
@pytest.mark.capability("nvme_namespace")
def test_a(link, conformance): pass
"""
    )
    result = pytester.runpytest("--topology", "rack.yaml", "-m", "fc_nvme")
    result.stdout.fnmatch_lines(["*category 'Access control' does not name the case's prefix 'discovery'*"])
