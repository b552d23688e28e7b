"""A fault case (timers, ANA) leaves the link's target and host as it found them: nvmet configfs, /sys/class/nvme.

An inner acceptance run on the emulated lab: a plain row brings the nvmet_rdma link up, the case
runs (its own subsystem, port, ANA groups, controllers), and a cheap row after it; the plugin
``case_state_plugin`` snapshots both nodes as each row's body starts, so the row after the case must
see exactly what the row before it saw. CI runs ``timers.path_recovery`` (about two minutes with the
link's bring-up); ``FABQUAL_CASE_CLEANUP=full`` runs every timers and ANA case on nvmet_rdma and fc_nvme.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fabqual.lab import EmulatedLab

REPO = Path(__file__).resolve().parents[3]
PLUGIN = "tests.self.lab.case_state_plugin"
BEFORE = {
    "rdma": "tests/acceptance/test_nvme_multipath.py::test_every_path_is_live[tr=rdma]",
    "fc": "tests/acceptance/test_conformance_discovery.py::test_generation_counter_follows_subsystems[tr=fc]",
}
AFTER = {
    "rdma": "tests/acceptance/test_conformance_discovery.py::test_generation_counter_follows_subsystems[tr=rdma]",
    "fc": "tests/acceptance/test_conformance_discovery.py::test_generation_counter_follows_ports[tr=fc]",
}
CASES = {
    "timers": "tests/acceptance/test_conformance_timers.py::{}[tr={}]",
    "ana": "tests/acceptance/test_conformance_ana.py::{}[tr={}]",
}


def rows() -> list[str]:
    if os.environ.get("FABQUAL_CASE_CLEANUP") != "full":
        return [BEFORE["rdma"], CASES["timers"].format("test_path_back_within_the_window", "rdma"), AFTER["rdma"]]
    chosen = []
    for tr in ("fc", "rdma"):
        chosen.append(BEFORE[tr])
        for name in ("test_path_back_within_the_window", "test_path_lost_for_good"):
            chosen.append(CASES["timers"].format(name, tr))
        chosen.append(CASES["ana"].format("test_ana_states_under_verified_writes", tr))
        chosen.append(AFTER[tr])
    return chosen


def test_fault_cases_leave_nvmet_and_nvme_as_found(lab: EmulatedLab, tmp_path: Path) -> None:
    """The nodes' nvmet configfs and /sys/class/nvme are the same before and after the cases, and they passed."""
    states = tmp_path / "states.jsonl"
    selected = rows()
    env = dict(
        os.environ, FABQUAL_FIO_RUNTIME_S="2", FABQUAL_REPORTS_DIR=str(tmp_path), FABQUAL_CASE_STATE_FILE=str(states)
    )
    env.pop("FABQUAL_TOPOLOGY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *selected, "-p", "no:cacheprovider", "-p", PLUGIN, "-rA"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=3000, check=False,
    )  # fmt: skip
    output = proc.stdout[-8000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, output
    seen = {entry["row"]: entry["state"] for entry in map(json.loads, states.read_text().splitlines())}
    for tr in ("fc", "rdma"):
        if BEFORE[tr] in selected:
            before, after = seen[BEFORE[tr]], seen[AFTER[tr]]
            for node, text in before.items():
                assert after[node] == text, f"{node} after the {tr} cases:\n{after[node]}\nbefore them:\n{text}"
