"""A killed run leaves nothing behind: SIGKILL real qualification runs, then run again.

The emulated lab is used as a rack (``--topology``): for each link type a
``pytest tests/acceptance --topology <lab> -m <link>`` child is SIGKILLed at a
point of its bring-up (and one in the middle of a measurement), each next run
sweeps what the one before left, and a last run over one short row per link
type passes. Afterwards every node's state — nvmet and LIO configfs,
``/sys/class/nvme``, null_blk, TUN devices and network namespaces, RDMA links,
FCoE controllers, SCSI devices, fabqual's daemons and tools, the TSO sysctl, run
directories — and the controller's vcsim processes equal the snapshot taken
before the first run.

CI runs the bring-up kills for all four link types and one mid-measurement
kill; ``FABQUAL_KILL_MATRIX=full`` adds a mid-measurement kill for every link type.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from fabqual.lab import EmulatedLab
from fabqual.testing.leaks import (
    FC,
    FCP,
    IPERF,
    IPOFC,
    PVRDMA,
    RDMA,
    ROWS,
    TCP,
    acceptance,
    leaked,
    loose_profile,
    node_state,
    run_and_signal,
    run_ids,
    vcsim_processes,
)
from fabqual.topology import Topology

REPO = Path(__file__).resolve().parents[3]

# (link marker, row, the child's log line at which it is killed)
BRING_UP_KILLS = [
    ("fc_nvme", FC, r"\[tgt\] nvme connect fc "),
    ("nvmet_rdma", RDMA, r"\[tgt\] create nvmet port "),
    ("ipofc", IPOFC, r"start IPoFC target daemon"),
    ("pvrdma", PVRDMA, r"\[ini\] create rxe device "),
    ("nvme_tcp", TCP, r"\[ini\] nvme connect tcp "),
    # FCoE controllers, LIO backstore/target, null_blk and the initiator's disk all exist here.
    ("fcp", FCP, r"\[ini\] /dev/sd\w+ \(naa\.\w+\): max_sectors_kb "),
]
MEASUREMENT_KILLS = [("nvmet_rdma", RDMA, r"\[ini\] fio randwrite ")]
FULL_MEASUREMENT_KILLS = [
    ("fc_nvme", FC, r"\[tgt\] fio randwrite "),
    ("ipofc", IPERF, r"iperf3 TCP to "),
    ("pvrdma", PVRDMA, r"ib_write_bw client to "),
]


def test_killed_runs_are_swept_by_the_next_and_the_last_run_passes_on_a_clean_lab(
    lab: EmulatedLab, topology: Topology, tmp_path: Path
) -> None:
    """SIGKILL at bring-up of every link type and during a measurement: each next run sweeps the one
    before (one line per node naming it), the last run passes every row, and the nodes and controller
    end as they were before the first run."""
    env = dict(os.environ, FABQUAL_FIO_RUNTIME_S="3", FABQUAL_REPORTS_DIR=str(tmp_path))
    env.pop("FABQUAL_TOPOLOGY", None)
    kills = BRING_UP_KILLS + MEASUREMENT_KILLS
    if os.environ.get("FABQUAL_KILL_MATRIX") == "full":
        kills += FULL_MEASUREMENT_KILLS
    profile = loose_profile(tmp_path / "kill-test.yaml")
    before = node_state(topology)
    vcsims_before = vcsim_processes()
    previous: list[str] = []
    for marker, row, point in kills:
        stopped = run_and_signal(acceptance(lab.topology_path, profile, marker, row), REPO, env, pattern=point)
        output = stopped.output
        assert stopped.signalled and stopped.returncode == -signal.SIGKILL, (
            f"not killed at {point!r}:\n{output[-4000:]}"
        )
        if previous:
            # This run's sweep found the previous killed run on the node(s) both used.
            assert any(f"{run_id}" in line for run_id in previous for line in output.splitlines() if "sweep" in line), (
                f"{marker} run did not sweep {previous}:\n{output[-3000:]}"
            )
        previous = run_ids(output)
        assert previous, f"{marker}: the killed run made no run directory:\n{output[-3000:]}"
        assert vcsim_processes(settle=30) == vcsims_before, f"a vcsim outlived the run killed at {point!r}"

    final = subprocess.run(
        acceptance(lab.topology_path, profile, " or ".join(ROWS), *ROWS.values()),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    output = final.stdout[-8000:] + final.stderr[-2000:]
    assert final.returncode == 0, output
    assert f"{len(ROWS)} passed" in final.stdout, output
    assert re.search(r"fabqual sweep: \w+: swept \d killed run", final.stdout), output
    leaks = leaked(before, node_state(topology))
    assert not leaks, "the nodes differ from before the first run:\n" + "\n".join(leaks)
    assert vcsim_processes(settle=30) == vcsims_before
