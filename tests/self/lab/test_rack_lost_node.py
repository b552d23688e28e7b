"""A node lost in the middle of a row, on the lab used as a rack: that row fails, the rest are errors.

An inner pytest run qualifies the lab's FC-NVMe link (fcloop inside guest
``tgt``) through ``--topology`` of the running lab, as a rack would be. While
the first fio row reads, ``tests/self/lab/kill_guest_plugin.py`` kills ``tgt``'s
QEMU. That row must fail showing the guest's last console lines (the device
under test may have crashed the node); the two later rows, which need ``tgt``,
must be errors at setup ("lab broken"), not failures; and the link type's
verdict must read ERROR, not FAIL. This kills a guest, so it runs last
(``own_lab``) and brings the lab down at the end: the next ``lab up`` boots it
fresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from fabqual.lab import EmulatedLab

REPO = Path(__file__).resolve().parents[3]
FIO = "tests/acceptance/test_nvme_fio.py::test_fio"
ROWS = [f"{FIO}[tr=fc-rw=read-bs=4k-qd=1]", f"{FIO}[tr=fc-rw=read-bs=4k-qd=32]", f"{FIO}[tr=fc-rw=randread-bs=4k-qd=1]"]
KILL_AFTER_S = 10  # into the first row's fio, which runs for FIO_RUNTIME_S
FIO_RUNTIME_S = 60


def test_guest_killed_during_fio_fails_that_row_and_errors_the_rest(own_lab: EmulatedLab, tmp_path: Path) -> None:
    """The killed row fails with console lines; later rows needing the node error; verdict ERROR, not FAIL."""
    lab = own_lab
    if not lab.is_running():  # an earlier own_lab test broke or stopped it
        lab.down()
        lab.ensure_up()
    tgt = next(g for g in lab.status().guests if g.name == "tgt")
    assert tgt.pid is not None
    env = dict(
        os.environ,
        FABQUAL_FIO_RUNTIME_S=str(FIO_RUNTIME_S),
        FABQUAL_REPORTS_DIR=str(tmp_path),
        FABQUAL_KILL_ROW=ROWS[0],
        FABQUAL_KILL_PID=str(tgt.pid),
        FABQUAL_KILL_AFTER_S=str(KILL_AFTER_S),
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *ROWS, "--topology", str(lab.topology_path), "-p", "no:cacheprovider",
             "-p", "tests.self.lab.kill_guest_plugin", f"--junitxml={tmp_path}/junit.xml"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
    finally:
        lab.down()  # whatever happened, the broken lab does not outlive the test
    output = proc.stdout[-8000:] + proc.stderr[-2000:]
    assert proc.returncode == 1, output

    cases = {
        case.get("name"): case for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    }  # fmt: skip
    killed, *later = (cases[row.split("::")[1]] for row in ROWS)
    failure = killed.find("failure")
    assert failure is not None and killed.find("error") is None, output
    text = (failure.get("message") or "") + (failure.text or "")
    assert "node tgt stopped answering during this row" in text, text
    assert "tgt: last console lines" in text and str(tgt.console_log) in text, text
    for case in later:
        error = case.find("error")
        assert error is not None and case.find("failure") is None, output
        assert "lab broken, not run: node tgt was lost during" in (error.get("message") or ""), output

    results = json.loads((tmp_path / "results-latest.json").read_text())
    outcomes = [next(t["outcome"] for t in results["tests"] if t["nodeid"] == row) for row in ROWS]
    assert outcomes == ["failed", "error", "error"], outcomes
    fc = results["verdicts"]["fc_nvme"]
    assert fc["lost_nodes"] == ["tgt"] and fc["verdict"] == "ERROR" and results["verdict"] == "ERROR", fc
