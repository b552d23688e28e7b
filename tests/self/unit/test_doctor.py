"""The doctor, run for real against this machine (whose kernel has no nvmet)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fabqual.doctor import Requirement, check_requirement, requirements_of, run_doctor
from fabqual.executors import LocalExecutor
from fabqual.topology import parse_topology
from tests.self.local_topology import LOCAL_RACK


def test_requirements_follow_from_the_links() -> None:
    """An fc_nvme target on fcloop needs nvmet, nvmet-fc and nvme-fcloop; an RDMA host needs nvme-rdma."""
    needs = requirements_of(parse_topology(LOCAL_RACK, "local.yaml"))["here"]
    modules = {req.name: links for req, links in needs.items() if req.kind == "module"}
    assert modules["nvmet"] == {"fc0", "roce0"}
    assert modules["nvmet-fc"] == {"fc0"}
    assert modules["nvme-fcloop"] == {"fc0"}
    assert modules["nvme-rdma"] == {"roce0"}
    assert modules["rdma_rxe"] == {"roce0"}


def test_doctor_finds_nvmet_missing_here() -> None:
    """This machine's kernel has no nvmet: the doctor says so, once, naming the links it blocks."""
    topology = parse_topology(LOCAL_RACK, "local.yaml")
    report = run_doctor(topology, lambda name: LocalExecutor(name))
    lines = [p.line() for p in report.problems]
    assert (
        "here: kernel module nvmet is missing; install the kernel modules package that provides nvmet"
        " for kernel $(uname -r) (blocks fc0, roce0)"
    ) in lines
    assert not report.ok
    assert report.problems_for("fc0")


def test_present_things_are_not_reported() -> None:
    """A module that is loaded and a tool that exists pass their checks (no false alarms)."""
    executor = LocalExecutor("here")
    loaded = sorted(p.name for p in Path("/sys/module").iterdir())[0]
    assert check_requirement(executor, Requirement("module", loaded)) is None
    assert check_requirement(executor, Requirement("tool", "python3")) is None


def test_firmware_and_hugepages_problems_are_actionable() -> None:
    """A missing QLogic firmware file and too few hugepages each get a line saying what to do."""
    executor = LocalExecutor("here")
    what, fix = check_requirement(executor, Requirement("firmware", "ql2700_fw.bin")) or ("", "")
    assert what == "firmware file /lib/firmware/ql2700_fw.bin is missing"
    assert "firmware-qlogic" in fix
    what, fix = check_requirement(executor, Requirement("hugepages", "6")) or ("", "")
    assert what.startswith("only ") and what.endswith("GB of hugepages (SPDK needs >= 6 GB)")


def test_doctor_command_exits_nonzero_with_one_line_per_problem(tmp_path: Path) -> None:
    """`fabqual doctor` prints PROBLEM lines and exits 1 when a declared link is blocked."""
    path = tmp_path / "local.yaml"
    path.write_text(LOCAL_RACK)
    proc = subprocess.run(
        [sys.executable, "-m", "fabqual.cli", "doctor", "--topology", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = [line for line in proc.stdout.splitlines() if line.startswith("PROBLEM ")]
    assert any("kernel module nvmet is missing" in line for line in problems)
    assert proc.stdout.splitlines()[-1].startswith("doctor: ")
    assert "blocked links: fc0, roce0" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
