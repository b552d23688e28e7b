"""The nightly run on a rack: lock, doctor, every link, report, JSON, JUnit, one exit code.

Exit codes a CI system can act on:

- 0 every test that applies passed;
- 1 a test failed: the device under test missed a threshold or misbehaved;
- 2 the lab is broken (a test errored, pytest could not run, no test ran) or the
  command was used wrongly;
- 3 another run holds the rack's lock (and ``--wait`` ran out).

Every file of a run carries the run's stamp (``<UTC time>-<pid>``), so two runs
never write the same file; the plain names (``qualification.html``,
``junit.xml``, ``results-latest.json``) are replaced atomically at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fabqual.errors import FabqualError
from fabqual.results.run import load_results, run_stamp
from fabqual.run.lock import RackLockedError, rack_lock

EXIT_PASS, EXIT_FAIL, EXIT_LAB, EXIT_LOCKED = 0, 1, 2, 3


def _say(line: str) -> None:
    print(f"fabqual nightly: {line}", flush=True)


def _doctor(topology: Any, out: Path) -> None:
    """Run the doctor and keep its lines; its findings also become errors of the blocked links."""
    from fabqual.doctor import run_doctor
    from fabqual.executors import NodeExecutors

    try:
        with NodeExecutors(topology) as executor_for:
            report = run_doctor(topology, executor_for)
        lines = [f"PROBLEM {p.line()}" for p in report.problems] or [f"{topology.name}: no problems found"]
    except FabqualError as error:
        lines = [f"doctor could not run: {str(error).splitlines()[0]}"]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines:
        _say(f"doctor: {line}")


def _publish(source: Path, name: str) -> None:
    """Copy a run's file to its plain name atomically (readers never see half a file)."""
    if not source.exists():
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=source.parent)
    os.close(fd)
    shutil.copyfile(source, tmp)
    os.replace(tmp, source.parent / name)


def exit_code(pytest_status: int, results_file: Path) -> tuple[int, str]:
    """The nightly exit code and a one-line reason, from pytest's status and the results file."""
    if pytest_status not in (0, 1):
        return EXIT_LAB, f"pytest ended with status {pytest_status} (interrupted, internal error, usage or no tests)"
    try:
        results = load_results(results_file)
    except FabqualError as error:
        return EXIT_LAB, str(error)
    totals = {o: sum(v.get(o, 0) for v in results["verdicts"].values()) for o in ("passed", "failed", "error")}
    summary = f"{results['verdict']}: {totals['passed']} passed, {totals['failed']} failed, {totals['error']} errors"
    try:
        waived = _waived(results)
    except FabqualError as error:
        return EXIT_LAB, str(error)
    if waived:
        totals["failed"] -= sum(1 for o in waived if o == "failed")
        totals["error"] -= sum(1 for o in waived if o == "error")
        summary += f"; {len(waived)} of them waived by the known-issues file (left out of the exit code)"
    if totals["failed"]:
        return EXIT_FAIL, summary
    if totals["error"]:
        return EXIT_LAB, summary
    if not totals["passed"]:
        return EXIT_LAB, summary + " (nothing passed: every test was skipped)"
    return EXIT_PASS, summary


def _waived(results: dict[str, Any]) -> list[str]:
    """Outcomes of the failed/errored tests an active waiver in ``$FABQUAL_KNOWN_ISSUES`` covers."""
    from fabqual.results.known_issues import ENV, effective_outcomes, load_known_issues, today

    path = os.environ.get(ENV)
    if not path:
        return []
    known = load_known_issues(path)
    tests = results.get("tests") or []
    after = effective_outcomes(tests, known, today())
    return [before["outcome"] for before, now in zip(tests, after, strict=True) if now["outcome"] == "waived"]


def run_nightly(
    topology_file: Path,
    *,
    reports: Path,
    wait: float,
    tests: str,
    pytest_args: list[str],
    doctor: bool = True,
) -> int:
    topology = _load(topology_file)
    if topology is None:
        return EXIT_LAB
    try:
        with rack_lock(topology.name, wait=wait):
            return _locked_run(topology, topology_file, reports, tests, pytest_args, doctor)
    except RackLockedError as error:
        print(f"fabqual nightly: {error}", file=sys.stderr)
        return EXIT_LOCKED


def run_locked(topology_file: Path, *, reports: Path, tests: str, pytest_args: list[str], doctor: bool = True) -> int:
    """The run on a rack something else already holds for us (a labgrid place): no file lock."""
    topology = _load(topology_file)
    if topology is None:
        return EXIT_LAB
    return _locked_run(topology, topology_file, reports, tests, pytest_args, doctor)


def _load(topology_file: Path) -> Any:
    from fabqual.topology import load_topology

    try:
        return load_topology(topology_file)
    except FabqualError as error:
        print(f"fabqual nightly: {error}", file=sys.stderr)
        return None


def _locked_run(
    topology: Any, topology_file: Path, reports: Path, tests: str, pytest_args: list[str], doctor: bool
) -> int:
    stamp = run_stamp()
    reports.mkdir(parents=True, exist_ok=True)
    html, junit = reports / f"qualification-{stamp}.html", reports / f"junit-{stamp}.xml"
    results_file = reports / f"results-{stamp}.json"
    _say(f"rack {topology.name!r} locked; run {stamp}")
    if doctor:
        _doctor(topology, reports / f"doctor-{stamp}.txt")
    command = [
        sys.executable,
        "-m",
        "pytest",
        tests,
        "--topology",
        str(topology_file),
        "-p",
        "fabqual.report.pytest_report",
        "-p",
        "no:labgrid",  # labgrid's own pytest plugin (installed with the coordinator client) is not ours
        f"--html={html}",
        "--self-contained-html",
        f"--junitxml={junit}",
        *pytest_args,
    ]
    env = {**os.environ, "FABQUAL_RESULTS_FILE": str(results_file), "FABQUAL_RUN_ID": stamp}
    _say("running " + " ".join(command[2:]))
    child = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    try:
        status = child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        status = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    _publish(html, "qualification.html")
    _publish(junit, "junit.xml")
    code, reason = exit_code(status, results_file)
    _say(f"{reason}; exit {code}")
    _say(f"report {html}, JUnit {junit}, results {results_file}")
    return code
