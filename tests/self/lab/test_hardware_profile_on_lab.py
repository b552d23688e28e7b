"""The rack's thresholds profile runs on the emulated lab: every row gets a verdict, none a harness error.

``hardware.yaml`` judges large-block fio and 64 KiB perftest bandwidth as a
fraction of the line rate the link reads from its ports. The lab's data NIC
declares 25000 Mb/s (QEMU's virtio-net ``speed``), so rxe and FCoE report 25G
and the fcloop HBA reads the NIC's speed. This runs, at the repository root as
a user would, rows of every link type with ``--profile hardware``: the lab is far slower than a rack, so
rows fail — that is right — but each one with threshold misses it measured,
never with a ThresholdError, an unknown line rate or an error. CI runs the rows
whose bounds are line-rate fractions; ``FABQUAL_SELFTEST_FULL=1`` one row per entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from fabqual.lab import EmulatedLab
from fabqual.thresholds import load_thresholds

REPO = Path(__file__).resolve().parents[3]

FIO = "tests/acceptance/test_nvme_fio.py::test_fio"
PERFTEST = "tests/acceptance/test_rdma_perftest.py"
IPOFC = "tests/acceptance/test_ipofc.py"
# Each hardware.yaml entry is met by one of these rows: fio 4k QD1/QD32 (IOPS and p99 bounds,
# catch-all bandwidth), 128k QD32 and 1m QD1 (the two line-rate fractions); perftest 4 KiB
# (catch-all) and 64 KiB (line-rate fraction) bandwidth and 2-byte latency; every IPoFC metric.
FULL_ENV = "FABQUAL_SELFTEST_FULL"  # 1: a row for every entry of hardware.yaml (≈ 15 min on a loaded host)
FIO_CASES = (("4k", 1), ("4k", 32), ("128k", 32), ("1m", 1))
PERFTEST_CASES = (
    "test_bandwidth[tr={tr}-test=ib_write_bw-size=4k]",
    "test_bandwidth[tr={tr}-test=ib_write_bw-size=64k]",
    "test_latency[tr={tr}-test=ib_write_lat-size=2]",
)
FULL_ROWS = [
    *(f"{FIO}[tr={tr}-rw=read-bs={bs}-qd={qd}]" for tr in ("fc", "rdma") for bs, qd in FIO_CASES),
    *(f"{PERFTEST}::{case.format(tr=tr)}" for tr in ("rdma", "pvrdma") for case in PERFTEST_CASES),
    f"{IPOFC}::test_ping[mtu=1500-tr=ipofc]",
    f"{IPOFC}::test_iperf3_udp[mtu=1500-tr=ipofc]",
    f"{IPOFC}::test_iperf3_tcp[mtu=1500-tr=ipofc-dir=to_target]",
    f"{IPOFC}::test_iperf3_tcp[mtu=9000-tr=ipofc-dir=to_target]",
]
# CI: the rows whose bounds are fractions of the line rate, one or two per link type that has them.
CI_ROWS = [
    f"{FIO}[tr=fc-rw=read-bs=128k-qd=32]",
    f"{FIO}[tr=fc-rw=read-bs=1m-qd=1]",
    f"{FIO}[tr=rdma-rw=read-bs=128k-qd=32]",
    f"{PERFTEST}::test_bandwidth[tr=rdma-test=ib_write_bw-size=64k]",
    f"{PERFTEST}::test_bandwidth[tr=pvrdma-test=ib_write_bw-size=64k]",
]
HARNESS_PROBLEMS = ("ThresholdError", "line rate is unknown", "no entry", "ambiguous", "Traceback")


def test_hardware_profile_gives_every_row_a_verdict_on_the_lab(lab: EmulatedLab, tmp_path: Path) -> None:
    """Every row passes or fails on its measured numbers; zero errors; line-rate bounds come from 25G ports."""
    full = os.environ.get(FULL_ENV) == "1"
    rows = FULL_ROWS if full else CI_ROWS
    env = dict(
        os.environ, FABQUAL_FIO_RUNTIME_S="2", FABQUAL_PERFTEST_ITERATIONS="100", FABQUAL_REPORTS_DIR=str(tmp_path)
    )
    env.pop("FABQUAL_TOPOLOGY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *rows, "--profile", "hardware", "-p", "no:cacheprovider",
         f"--junitxml={tmp_path}/junit.xml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=2400, check=False,
    )  # fmt: skip
    output = proc.stdout[-8000:] + proc.stderr[-2000:]
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None, output
    assert (suite.get("tests"), suite.get("errors"), suite.get("skipped")) == (str(len(rows)), "0", "0"), output

    results = json.loads((tmp_path / "results-latest.json").read_text())
    assert results["run"]["profile"] == "hardware"
    for test in results["tests"]:
        assert test["outcome"] in ("passed", "failed"), (test["nodeid"], test["reason"])
        assert not any(p in test["reason"] for p in HARNESS_PROBLEMS), (test["nodeid"], test["reason"])
    by_test: dict[str, list[dict[str, object]]] = {}
    for metric in results["metrics"]:
        by_test.setdefault(str(metric["test"]), []).append(metric)
    for test in results["tests"]:
        measured = by_test.get(test["nodeid"], [])
        assert measured, f"{test['nodeid']} recorded no metric: {test['reason']}"
        if test["outcome"] == "failed":  # a verdict on numbers: at least one metric missed its bound
            assert any(not m["passed"] for m in measured), (test["nodeid"], test["reason"])

    fractions = [m for m in results["metrics"] if "x 25 Gb/s line rate" in str(m["threshold_source"])]
    assert {m["link_type"] for m in fractions} == {"fc_nvme", "nvmet_rdma", "pvrdma"}, fractions
    if not full:
        return
    # Every entry of hardware.yaml that these rows can reach was the bound of some metric.
    used = {str(m["threshold_source"]).split(": ", 2)[1] for m in results["metrics"]}
    profile = load_thresholds("hardware")
    wanted = {entry.where.split(": ", 1)[1] for entries in profile.entries.values() for entry in entries}
    unreachable = {w for w in wanted if w.endswith("[0]") and "lat_" in w}  # catch-alls for sizes the tests never use
    assert wanted - unreachable <= used, sorted(wanted - unreachable - used)
