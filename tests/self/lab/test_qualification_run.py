"""The README's main command, cut to a few rows, run for real on the emulated lab.

This is what `bash scripts/qualify.sh` runs (pytest on tests/acceptance without a
topology, so the plugin uses the emulated lab), limited to one row per link type
so CI stays short. It proves the whole path: doctor, link bring-up through the
registered drivers, real tools across the links, thresholds, the HTML/JUnit/JSON
reports, and teardown leaving the guests as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from fabqual.lab import EmulatedLab
from fabqual.testing.leaks import leaked, node_state
from fabqual.topology import Topology

REPO = Path(__file__).resolve().parents[3]

# One row per link type: a verified write over FC-NVMe and over NVMe/RoCE, RDMA
# bandwidth across the nvmet_rdma and pvrdma links, ping through the IPoFC tunnel.
SMOKE_ROWS = [
    "tests/acceptance/test_nvme_fio.py::test_fio[tr=fc-rw=randwrite-bs=4k-qd=32]",
    "tests/acceptance/test_nvme_fio.py::test_fio[tr=rdma-rw=randwrite-bs=4k-qd=32]",
    "tests/acceptance/test_rdma_perftest.py::test_bandwidth[tr=rdma-test=ib_write_bw-size=64k]",
    "tests/acceptance/test_rdma_perftest.py::test_bandwidth[tr=pvrdma-test=ib_write_bw-size=64k]",
    "tests/acceptance/test_ipofc.py::test_ping[mtu=1500-tr=ipofc]",
]


def test_qualification_rows_pass_report_and_leave_guests_clean(
    lab: EmulatedLab, topology: Topology, tmp_path: Path
) -> None:
    """A short qualification run passes on every link type, writes the three reports, and cleans up."""
    before = node_state(topology)
    env = dict(os.environ, FABQUAL_FIO_RUNTIME_S="2", FABQUAL_REPORTS_DIR=str(tmp_path))
    env.pop("FABQUAL_TOPOLOGY", None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", *SMOKE_ROWS, "-p", "no:cacheprovider",
            f"--html={tmp_path}/qualification.html", "--self-contained-html", f"--junitxml={tmp_path}/junit.xml",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    output = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, output

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        str(len(SMOKE_ROWS)), "0", "0", "0",
    ), output  # fmt: skip
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties.get("fabqual.topology") == "emulated-lab"

    results = json.loads((tmp_path / "results-latest.json").read_text())
    recorded = json.dumps(results)
    for link_type in ("fc_nvme", "nvmet_rdma", "pvrdma", "ipofc"):
        assert f'"{link_type}"' in recorded, f"no metric recorded for {link_type}"
    html = (tmp_path / "qualification.html").read_text()
    assert "emulated-lab" in html and "Qualification report" in html

    leaks = leaked(before, node_state(topology))
    assert not leaks, "the run left state behind in the guests:\n" + "\n".join(leaks)
