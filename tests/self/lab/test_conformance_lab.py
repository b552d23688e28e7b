"""A conformance case leaves the nodes as it found them, also when its run is SIGKILLed in the middle of it.

The emulated lab is used as a rack. A ``pytest tests/acceptance --topology
<lab>`` child running the access case ``host_not_allowed`` over nvme_tcp (the
link quickest to bring up) is SIGKILLed at the case's first connect attempt,
when the case's own subsystem, allowed host and port link exist on the target;
the next run must sweep them (one line naming the killed run), run the case to
a pass (its ``nvme_fabric`` fixture compares the nodes' nvmet objects and
controllers before and after the case) and leave every node's state equal to
the snapshot taken before the first run. 209 s with the lab up (load 9, TCG): CI runs it.
``FABQUAL_CONFORMANCE_LAB=full`` runs every conformance case on nvme_tcp in the
final run instead of one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from fabqual.lab import EmulatedLab
from fabqual.testing.leaks import acceptance, leaked, loose_profile, node_state, run_and_signal, run_ids
from fabqual.topology import Topology

REPO = Path(__file__).resolve().parents[3]
CASE = "tests/acceptance/test_conformance_access.py::test_host_not_allowed_is_refused[tr=tcp]"
KILL_AT = r"\[\w+\] attempt: nvme connect "


def test_killed_case_is_swept_and_a_case_leaves_the_nodes_as_before(
    lab: EmulatedLab, topology: Topology, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a case: the next run sweeps the case's nvmet objects with the link's, the case
    then passes (its own before/after check included), and the nodes end as before the first run."""
    env = dict(os.environ, FABQUAL_REPORTS_DIR=str(tmp_path))
    env.pop("FABQUAL_TOPOLOGY", None)
    profile = loose_profile(tmp_path / "conformance-lab.yaml")
    before = node_state(topology)
    killed = run_and_signal(acceptance(lab.topology_path, profile, "nvme_tcp", CASE), REPO, env, pattern=KILL_AT)
    assert killed.signalled and killed.returncode == -signal.SIGKILL, (
        f"not killed in the case:\n{killed.output[-4000:]}"
    )
    assert "conf-acl" in killed.output, f"killed before the case made its subsystem:\n{killed.output[-3000:]}"
    killed_runs = run_ids(killed.output)
    rows = ["tests/acceptance/"] if os.environ.get("FABQUAL_CONFORMANCE_LAB") == "full" else [CASE]
    marker = "nvme_tcp and conformance"
    final = subprocess.run(
        acceptance(lab.topology_path, profile, marker, *rows),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    output = final.stdout[-8000:] + final.stderr[-2000:]
    assert final.returncode == 0 and re.search(r"\d+ passed", final.stdout), output
    sweep = [line for line in final.stdout.splitlines() if line.startswith("fabqual sweep:") and "swept" in line]
    assert any(run_id in line for run_id in killed_runs for line in sweep), f"{killed_runs} not swept:\n{output}"
    leaks = leaked(before, node_state(topology))
    assert not leaks, "the nodes differ from before the killed run:\n" + "\n".join(leaks)
