"""A pytest plugin for the case-cleanup self-test's inner run: the nodes' NVMe state as each row starts.

Loaded with ``-p tests.self.lab.case_state_plugin``; ``FABQUAL_CASE_STATE_FILE`` names a file that
gets one JSON line per row: the row's node id and, per node, the nvmet configfs tree (subsystems,
namespaces, ports, ANA groups and their states, hosts) and ``/sys/class/nvme``, read just before the
row's body runs (after its fixtures: the link is up then). Nothing in fabqual knows about it.
"""

from __future__ import annotations

import json
import os

import pytest

from fabqual.plugin.keys import RUN

FILE = "FABQUAL_CASE_STATE_FILE"
STATE = (
    "find /sys/kernel/config/nvmet/subsystems /sys/kernel/config/nvmet/ports /sys/kernel/config/nvmet/hosts"
    " -maxdepth 4 2>/dev/null | sort;"
    " grep -H . /sys/kernel/config/nvmet/ports/*/ana_groups/*/ana_state 2>/dev/null;"
    " echo nvme: $(ls /sys/class/nvme 2>/dev/null)"
)


def pytest_runtest_call(item: pytest.Item) -> None:
    path = os.environ.get(FILE)
    if not path:
        return
    run = item.config.stash[RUN]
    state = {node.name: run.executor(node.name).run(STATE, timeout=60).stdout for node in run.topology.nodes}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"row": item.nodeid, "state": state}) + "\n")
