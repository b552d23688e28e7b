"""The pytest plugin, exercised by running real pytest sessions (pytester) on local topologies."""

from __future__ import annotations

import json

import pytest

from fabqual.report.document import coverage_notes
from tests.self.local_topology import LOCAL_RACK

pytest_plugins = ["pytester"]

FIO_LIKE_TEST = """
import pytest

@pytest.mark.capability("nvme_namespace")
@pytest.mark.parametrize("bs", ["4k", "128k"], ids=lambda v: f"bs={v}")
def test_io(link, bs):
    assert link is not None
"""


@pytest.fixture
def rack(pytester: pytest.Pytester) -> str:
    path = pytester.path / "rack.yaml"
    path.write_text(LOCAL_RACK)
    return str(path)


def test_link_markers_select_exactly_their_rows(pytester: pytest.Pytester, rack: str) -> None:
    """`-m fc_nvme` selects only FC rows; ids read tr=fc-bs=4k."""
    pytester.makepyfile(test_io=FIO_LIKE_TEST)
    result = pytester.runpytest("--collect-only", "-q", "--topology", rack, "-m", "fc_nvme")
    result.stdout.fnmatch_lines(["test_io.py::test_io[[]tr=fc-bs=4k[]]", "test_io.py::test_io[[]tr=fc-bs=128k[]]"])
    assert "tr=rdma" not in result.stdout.str()
    result = pytester.runpytest("--collect-only", "-q", "--topology", rack, "-m", "nvmet_rdma")
    result.stdout.fnmatch_lines(["test_io.py::test_io[[]tr=rdma-bs=4k[]]"])
    assert "tr=fc" not in result.stdout.str()


def test_link_markers_are_strict(pytester: pytest.Pytester, rack: str) -> None:
    """The four link markers are registered, so --strict-markers accepts them and rejects typos."""
    pytester.makepyfile(
        test_m="""
import pytest
@pytest.mark.fc_nvme
@pytest.mark.nvmet_rdma
@pytest.mark.pvrdma
@pytest.mark.ipofc
def test_ok(): pass
@pytest.mark.fc_nvmee
def test_typo(): pass
"""
    )
    result = pytester.runpytest("--strict-markers", "--topology", rack)
    result.stdout.fnmatch_lines(["*'fc_nvmee' not found in `markers` configuration option*"])


def test_capability_without_a_link_is_a_skip_with_reason(pytester: pytest.Pytester, rack: str) -> None:
    """A test needing a capability no link offers is skipped, saying why."""
    pytester.makepyfile(
        test_t="""
import pytest
@pytest.mark.capability("ip_tunnel")
def test_tunnel(ip_tunnel): pass
"""
    )
    result = pytester.runpytest("-rs", "--topology", rack)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*topology 'local-rack' has no link offering ip_tunnel*"])


def test_strict_turns_that_skip_into_an_error(pytester: pytest.Pytester, rack: str) -> None:
    """With --strict (formal qualification) a missing capability is an error, not a skip."""
    pytester.makepyfile(
        test_t="""
import pytest
@pytest.mark.capability("ip_tunnel")
def test_tunnel(ip_tunnel): pass
"""
    )
    result = pytester.runpytest("--strict", "--topology", rack)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*strict run: not applicable here: topology 'local-rack' has no link offering ip_tunnel*"]
    )


DIRECT_SKIPS = """
import pytest

@pytest.fixture
def needs_a_switch():
    pytest.skip("no FC switch in this rack to disable a port on")

@pytest.mark.capability("nvme_namespace")
def test_skips_itself(link):
    pytest.skip("real HBAs are not unplugged")

@pytest.mark.capability("nvme_namespace")
def test_skipped_by_a_fixture(link, needs_a_switch):
    pass

@pytest.mark.capability("nvme_namespace")
def test_runs(link):
    pass
"""


def test_strict_turns_every_skip_into_an_error(
    pytester: pytest.Pytester, rack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pytest.skip in a test body or in a fixture escapes no formal run: terminal, JUnit and results say error."""
    monkeypatch.setenv("FABQUAL_REPORTS_DIR", str(pytester.path / "reports"))
    pytester.makepyfile(test_skips=DIRECT_SKIPS)
    result = pytester.runpytest("--strict", "--topology", rack, "-m", "fc_nvme", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*strict run: not applicable here: real HBAs are not unplugged*"])
    junit = (pytester.path / "junit.xml").read_text()
    assert junit.count("<error ") == 2 and "<failure" not in junit and "<skipped" not in junit, junit
    results = json.loads((pytester.path / "reports" / "results-latest.json").read_text())
    outcomes = {t["nodeid"].split("::")[1]: (t["outcome"], t["reason"]) for t in results["tests"]}
    assert outcomes["test_skips_itself[tr=fc]"] == (
        "error",
        "setup: strict run: not applicable here: real HBAs are not unplugged",
    )
    assert outcomes["test_skipped_by_a_fixture[tr=fc]"][0] == "error"
    fc = results["verdicts"]["fc_nvme"]
    assert (fc["planned"], fc["run"], fc["passed"], fc["error"], fc["verdict"]) == (3, 1, 1, 2, "ERROR")


def test_without_strict_the_report_counts_and_names_the_skips(
    pytester: pytest.Pytester, rack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An informal run skips, and its results show per link the rows planned, run and skipped with reasons."""
    monkeypatch.setenv("FABQUAL_REPORTS_DIR", str(pytester.path / "reports"))
    pytester.makepyfile(test_skips=DIRECT_SKIPS)
    result = pytester.runpytest("--topology", rack, "-m", "fc_nvme")
    result.assert_outcomes(passed=1, skipped=2)
    results = json.loads((pytester.path / "reports" / "results-latest.json").read_text())
    fc = results["verdicts"]["fc_nvme"]
    assert (fc["planned"], fc["run"], fc["skipped"]) == (3, 1, 2)
    assert fc["skip_reasons"] == {"real HBAs are not unplugged": 1, "no FC switch in this rack to disable a port on": 1}
    assert any("Not a formal run: 2 row(s) were skipped" in note for note in coverage_notes(results))


def test_doctor_problems_make_the_blocked_links_error(pytester: pytest.Pytester, rack: str) -> None:
    """This machine lacks nvmet: the FC link's tests error (lab broken) with the doctor's line, not fail."""
    pytester.makepyfile(
        test_ns="""
import pytest
@pytest.mark.capability("nvme_namespace")
def test_ns(nvme_namespace): pass
"""
    )
    result = pytester.runpytest("--topology", rack, "-m", "fc_nvme")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*link fc0 cannot be brought up; the doctor found:*",
            "*here: kernel module nvmet is missing*(blocks fc0, roce0)*",
        ]
    )


def test_kernel_warning_during_a_test_fails_it(pytester: pytest.Pytester, rack: str) -> None:
    """A WARNING: written to the node's real kernel log while the test runs fails the test, quoting it."""
    pytester.makepyfile(
        test_k="""
import pytest
@pytest.mark.capability("nvme_namespace")
def test_noisy(link, node_executor):
    node_executor("here").run("echo 'WARNING: CPU: 0 PID: 1 at fabqual/selftest' > /dev/kmsg")

@pytest.mark.capability("nvme_namespace")
def test_quiet(link, node_executor):
    node_executor("here").run("echo 'fabqual quiet test' > /dev/kmsg")
"""
    )
    result = pytester.runpytest("--topology", rack, "-m", "fc_nvme")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*here: the kernel logged problems during this test:*", "*WARNING: CPU: 0 PID: 1 at fabqual/selftest*"]
    )


def test_broken_topology_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A broken topology stops the run at collection with the loader's one line."""
    bad = pytester.path / "bad.yaml"
    bad.write_text(LOCAL_RACK.replace("emulation: fcloop", "emulation: fcloopy"))
    pytester.makepyfile(test_io=FIO_LIKE_TEST)
    result = pytester.runpytest("--topology", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*bad.yaml: nodes[[]0[]].hbas[[]0[]].emulation: 'fcloopy' is not one of 'none', 'fcloop', 'fcoe'*"]
    )


def test_a_metric_without_a_value_fails_and_never_passes(pytester: pytest.Pytester, rack: str) -> None:
    """None or nan handed to check_metric fails the test naming link, metric and context; an unknown value
    read through a parser's property fails with the ParseError naming tool, test, size and column."""
    pytester.makepyfile(
        test_m="""
import pytest
from fabqual.tools.perftest import LatRow, PerftestResult

@pytest.mark.capability("nvme_namespace")
def test_none(link, check_metric):
    check_metric(link, "iops", None, context={"bs": "4k"})

@pytest.mark.capability("nvme_namespace")
def test_nan(link, check_metric):
    check_metric(link, "iops", float("nan"))

@pytest.mark.capability("nvme_namespace")
def test_unknown_column(link, check_metric):
    old = PerftestResult("RDMA_Write Latency Test", None, (), (LatRow(2, 200, 1.0, 9.0, 1.5, *[None] * 4),))
    assert old.lat_typical_us == 1.5
    check_metric(link, "lat_p99_us", old.lat_p99_us)
"""
    )
    result = pytester.runpytest("--topology", rack, "-m", "fc_nvme")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*fc0: iops (bs=4k) has no measured value (None): the tool did not report it*",
            "*fc0: iops has no measured value (nan)*",
            "*cannot parse perftest output: RDMA_Write Latency Test size 2: 99% percentile is unknown*",
        ],
        consecutive=False,
    )
