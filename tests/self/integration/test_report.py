"""The qualification report, from a small real pytest run, checked in headless Chromium.

The fake suite records Measurements the way ``check_metric`` does (as
``fabqual_metric`` user properties) on a throwaway topology: node ``here`` is
this machine (``address: local``, so the inventory is real), node ``gone`` is an
SSH address where nothing listens (so the unreachable path is real too). No
hardware is mocked: the suite never brings a link up, it only records numbers.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RACK = """
name: report-rack
profile: emulated
nodes:
  - name: here
    address: local
    roles: [nvme_target, nvme_host, rdma_endpoint, ipofc_end]
    nvme_target: {backend: kernel}
    hbas:
      - {name: fc0, model: "QLE2742 (emulated)", emulation: fcloop}
    rnics:
      - {name: rnic0, netdev: lo, rdma_device: rxe0, emulation: rxe, driver: rdma_rxe}
    scratch_devices:
      - {name: nullb0, path: /dev/nullb0, create: null_blk}
  - name: gone
    address: 127.0.0.1
    port: 1
    credentials: {password_env: FQ_SECRET_PW}
    roles: [ipofc_end]
    hbas:
      - {name: fc1, model: QLE2562}
links:
  - name: fc0
    type: fc_nvme
    target: {node: here, device: fc0}
    host: {node: here, device: fc0}
    namespaces: [nullb0]
  - name: roce0
    type: nvmet_rdma
    target: {node: here, device: rnic0}
    host: {node: here, device: rnic0}
    namespaces: [nullb0]
  - name: ipofc0
    type: ipofc
    target: {node: here, device: fc0}
    initiator: {node: gone, device: fc1}
    carrier: fcoe
"""

SECRET = "hunter2-do-not-print"

# FQ_WORSE=1 makes exactly one metric (roce0 bw at bs=64k) 30 % worse.
FAKE_SUITE = """
import os, time
import pytest
from fabqual.measure import USER_PROPERTY, Measurement

def record(request, link, metric, value, unit, threshold, cmp, **context):
    m = Measurement(link=link.name, link_type=link.type, metric=metric, value=value, unit=unit,
                    threshold=threshold, comparison=cmp, context=context, threshold_source="fake.yaml")
    request.node.user_properties.append((USER_PROPERTY, m.to_json()))
    return m

@pytest.mark.capability("nvme_namespace")
@pytest.mark.parametrize("bs", ["4k", "64k", "1m"])
def test_bw(request, link, fabqual_run, attach_output, bs):
    time.sleep(float(os.environ.get("FQ_SLEEP", "0")))
    attach_output("fio " + bs, "fio raw output bs=%s\\npassword=%s" % (bs, os.environ["FQ_SECRET_PW"]))
    value = {"4k": 100.0, "64k": 800.0, "1m": 1500.0}[bs]
    if os.environ.get("FQ_WORSE") and link.name == "roce0" and bs == "64k":
        value *= 0.7
    m = record(request, link, "bw", value, "MB/s", 90.0 if bs == "4k" else 500.0, ">=", bs=bs)
    assert m.passed, m.describe()

@pytest.mark.capability("nvme_namespace")
@pytest.mark.parametrize("bs", ["4k", "64k"])
def test_lat(request, link, fabqual_run, bs):
    record(request, link, "lat", {"4k": 80.0, "64k": 300.0}[bs], "us", 1000.0, "<=", bs=bs)

@pytest.mark.capability("ip_tunnel")
@pytest.mark.parametrize("mtu", [1500, 9000])
def test_ipofc(request, link, fabqual_run, mtu):
    m = record(request, link, "throughput", 88.0 if mtu == 1500 else 485.0, "Mbit/s", 100.0, ">=", mtu=str(mtu))
    if not m.passed:
        pytest.fail(m.describe(), pytrace=False)

@pytest.mark.capability("rdma_pair")
def test_rdma_skip(link, fabqual_run):
    pytest.skip("rdma_rxe is not loaded on this host")
"""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def run_suite(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A real pytest session on the fake suite, with the report plugin, as CI would run it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FABQUAL_")}
    environ.update(FQ_SECRET_PW=SECRET, **env)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "test_fake.py",
        "-p",
        "fabqual.report.pytest_report",
        "-p",
        "no:cacheprovider",
        "--topology",
        "rack.yaml",
        "--no-health-gate",  # the fake suite changes nothing on the node
        "--html=reports/qualification.html",
        "--self-contained-html",
        "--junitxml=reports/junit.xml",
        "-q",
        *args,
    ]
    return subprocess.run(command, cwd=workdir, env=environ, capture_output=True, text=True, timeout=300)


def make_workdir(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    (base / "rack.yaml").write_text(RACK)
    (base / "test_fake.py").write_text(FAKE_SUITE)
    return base


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = make_workdir(tmp_path_factory.mktemp("report"))
    result = run_suite(workdir)
    # one ipofc row misses its threshold on purpose: pytest exits 1
    assert result.returncode == 1, result.stdout + result.stderr
    return workdir


def results_of(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "reports" / "results-latest.json").read_text())  # type: ignore[no-any-return]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it; apt-get install chromium)")
    return path


def open_in_chromium(page: Path, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """Render ``page``; return Chromium's output and the console messages it logged."""
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}", *extra, page.as_uri()]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def visible_text(dom: str) -> str:
    text = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_results_json_holds_every_test_and_metric(first_run: Path) -> None:
    """The JSON results carry run metadata, verdicts per link type, every metric with threshold and margin."""
    results = results_of(first_run)
    assert results["run"]["topology"] == "report-rack" and results["run"]["profile"] == "emulated"
    assert results["verdict"] == "FAIL"
    assert results["verdicts"]["fc_nvme"]["verdict"] == "PASS"
    assert results["verdicts"]["ipofc"] == {
        "planned": 2,
        "run": 2,
        "passed": 1,
        "failed": 1,
        "error": 0,
        "skipped": 0,
        "informational_failed": 0,  # failed informational conformance cases: shown, not counted
        "skip_reasons": {},
        "lost_nodes": [],  # node gone never answered: it cannot have been lost during a row
        "verdict": "FAIL",
    }
    assert results["verdicts"]["nvmet_rdma"]["skipped"] == 1
    assert len(results["metrics"]) == 2 * 5 + 2  # bw and lat on two links, throughput at two MTUs
    missed = [m for m in results["metrics"] if not m["passed"]]
    assert [(m["link"], m["context"], round(m["margin"], 3)) for m in missed] == [("ipofc0", {"mtu": "1500"}, -0.12)]
    skipped = [t for t in results["tests"] if t["outcome"] == "skipped"]
    assert skipped[0]["reason"] == "rdma_rxe is not loaded on this host"
    files = sorted(p.name for p in (first_run / "reports").glob("results-*.json"))
    assert len(files) == 2 and "results-latest.json" in files


def test_inventory_is_read_from_the_nodes_and_an_unreachable_node_is_a_line(first_run: Path) -> None:
    """Node ``here`` reports this machine's real kernel and tools; ``gone`` is recorded, not fatal."""
    nodes = {n["name"]: n for n in results_of(first_run)["testbed"]["nodes"]}
    assert nodes["here"]["facts"]["kernel"] == os.uname().release
    assert nodes["here"]["tools"]["fio"].startswith("fio-") or nodes["here"]["tools"]["fio"] == "not installed"
    assert nodes["gone"]["reachable"] is False
    assert nodes["gone"]["error"].startswith("gone (127.0.0.1): inventory not collected:")


def test_secrets_never_reach_any_report_file(first_run: Path) -> None:
    """The password_env value and password=… in tool output are redacted in HTML, JSON and JUnit."""
    for path in (first_run / "reports").iterdir():
        assert SECRET not in path.read_text(errors="replace"), path
    outputs = [o["text"] for t in results_of(first_run)["tests"] for o in t["outputs"]]
    assert outputs and all("password=[redacted]" in text for text in outputs)


def test_junit_xml_records_the_testbed(first_run: Path) -> None:
    junit = (first_run / "reports" / "junit.xml").read_text()
    properties = dict(re.findall(r'<property name="(fabqual\.[^"]+)" value="([^"]*)"', junit))
    assert properties["fabqual.topology"] == "report-rack"
    assert properties["fabqual.profile"] == "emulated"
    assert properties["fabqual.node.here.kernel"] == os.uname().release
    assert properties["fabqual.node.gone.kernel"] == "unreachable"
    assert properties["fabqual.verdict.ipofc"] == "FAIL"


def test_no_results_and_no_inventory_when_the_run_never_reaches_the_rack(tmp_path: Path) -> None:
    """Collection alone contacts no node and writes no results file."""
    workdir = make_workdir(tmp_path)
    result = run_suite(workdir, "--collect-only")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list((workdir / "reports").glob("results-*.json"))


def test_console_error_detection_works(tmp_path: Path) -> None:
    """The browser check below would see a JS error: proven on a page that has one."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body>x<script>undefined_function_here();</script></body></html>")
    _, console = open_in_chromium(page, tmp_path, "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in console), console


def test_report_renders_in_chromium_as_a_document(first_run: Path, tmp_path: Path) -> None:
    """Headless Chromium shows verdicts, inventory, metric table, plots and history, with no console error."""
    page = first_run / "reports" / "qualification.html"
    dom, console = open_in_chromium(page, tmp_path, "--dump-dom")
    assert console == []
    text = visible_text(dom)
    for expected in (
        "Qualification report: report-rack (FAIL)",
        "Qualification verdict",
        "Overall: FAIL",
        "Testbed inventory",
        os.uname().release,
        "gone (127.0.0.1): inventory not collected",
        "Tool versions",
        "Metrics against thresholds",
        "12 measured, 1 outside their threshold",
        "ipofc0 ipofc throughput mtu=1500 88 Mbit/s >= 100 -12.0% FAIL",
        "Plots",
        "ipofc0 (ipofc): throughput vs MTU",
        "roce0 (nvmet_rdma): bw vs bs",
        "Failures, errors and skips",
        "rdma_rxe is not loaded on this host",
        "No earlier run of this topology",
    ):
        assert expected in text, expected
    assert dom.count('class="fabqual-chart"') == 5  # bw and lat per NVMe link, throughput per MTU
    # pytest-html's own table was rendered by its script (rows exist in the DOM)
    assert "test_fake.py::test_ipofc[tr=ipofc-1500]" in text
    shot = first_run / "reports" / "qualification.png"
    open_in_chromium(page, tmp_path, "--window-size=1400,3200", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_second_run_shows_history_and_flags_the_one_worse_metric(first_run: Path, tmp_path: Path) -> None:
    """A later run with one metric 30 % worse: the history section flags exactly that metric."""
    result = run_suite(first_run, FQ_WORSE="1")
    assert result.returncode == 1, result.stdout + result.stderr
    dom, console = open_in_chromium(first_run / "reports" / "qualification.html", tmp_path, "--dump-dom")
    assert console == []
    text = visible_text(dom)
    history = text[text.index("History") : text.index("Failures, errors and skips")]
    assert "1 metric(s) regressed" in history
    assert re.findall(r"(\S+) MB/s \S+ \S+ \S+ ±10% REGRESSED", history) == ["roce0/bw[bs=64k]"]
    assert history.count("REGRESSED") == 1
