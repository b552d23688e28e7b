"""Secrets never reach what a run writes: pytest-html, JUnit XML, the log file, the terminal.

A real inner pytest session (as CI runs it, with fabqual's plugins) on a topology
whose node logs in with ``password_env``; its tests plant the password in a
failing assertion message, a traceback, log lines (fabqual's and another
library's), captured stdout/stderr, a skip reason and a JUnit property. Every
file the run writes and everything it prints are then searched for it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from fabqual import redaction

SECRET = "Sw0rdf1sh-not-for-reports"

RACK = """
name: secret-rack
profile: emulated
nodes:
  - name: far
    address: 127.0.0.1
    port: 1
    credentials: {password_env: FQ_SECRET_PW}
    roles: [ipofc_end]
links: []
"""

SUITE = """
import logging, os, sys
import pytest

SECRET = os.environ["FQ_SECRET_PW"]

def test_assertion_message():
    logging.getLogger("fabqual.steps").warning("[far] log in with %s", SECRET)
    logging.getLogger("paramiko.transport").error("auth failed for " + SECRET)
    print("stdout says", SECRET)
    sys.stderr.write("stderr says " + SECRET + "\\\\n")
    assert SECRET == "the right one", f"wrong password {SECRET}"

def test_traceback():
    raise RuntimeError("connection string has " + SECRET)

def test_skip_reason():
    pytest.skip("cannot use " + SECRET)

def test_property(record_property):
    record_property("login", SECRET)
    logging.getLogger("fabqual").exception("no exception here, but %s", SECRET)
"""


def run_inner(workdir: Path) -> subprocess.CompletedProcess[str]:
    (workdir / "rack.yaml").write_text(RACK)
    (workdir / "test_secrets.py").write_text(SUITE)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FABQUAL_")}
    environ["FQ_SECRET_PW"] = SECRET
    command = [
        sys.executable,
        "-m",
        "pytest",
        "test_secrets.py",
        "-p",
        "fabqual.report.pytest_report",
        "-p",
        "no:cacheprovider",
        "--topology",
        "rack.yaml",
        "--no-health-gate",
        "--html=reports/qualification.html",
        "--self-contained-html",
        "--junitxml=reports/junit.xml",
        "-o",
        "junit_logging=all",  # captured stdout, stderr and log lines go into the XML too
        "--log-file=reports/run.log",
        "--log-file-level=DEBUG",
        "--log-level=DEBUG",
        "-rA",
        "-v",
    ]
    return subprocess.run(command, cwd=workdir, env=environ, capture_output=True, text=True, timeout=300)


def test_a_planted_secret_is_in_no_file_and_no_output(tmp_path: Path) -> None:
    """The password of password_env, planted everywhere a test can put text, appears nowhere the run
    writes; the places it was planted show the redaction mark instead (so the test could fail)."""
    proc = run_inner(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the planted failures, nothing worse
    written = {p.name: p.read_text(errors="replace") for p in (tmp_path / "reports").iterdir() if p.is_file()}
    assert {"qualification.html", "junit.xml", "run.log"} <= set(written)
    for name, text in {**written, "stdout": proc.stdout, "stderr": proc.stderr}.items():
        assert SECRET not in text, f"{name} holds the secret"
    junit, log = written["junit.xml"], written["run.log"]
    assert f"wrong password {redaction.MARK}" in junit
    assert f"connection string has {redaction.MARK}" in junit
    assert f"stdout says {redaction.MARK}" in junit and f"auth failed for {redaction.MARK}" in junit
    assert f"cannot use {redaction.MARK}" in junit
    assert f'name="login" value="{redaction.MARK}"' in junit
    assert f"[far] log in with {redaction.MARK}" in log and f"auth failed for {redaction.MARK}" in log
    assert f"wrong password {redaction.MARK}" in written["qualification.html"]


def test_log_records_are_redacted_when_made() -> None:
    """Any handler sees the redacted message, also with %-style arguments and a traceback."""
    redaction.install_log_redaction()
    redaction.register("in-process-secret-1234")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("fabqual.test_redaction")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("user %s", "in-process-secret-1234")
        try:
            raise ValueError("in-process-secret-1234")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = " ".join(logging.Formatter().format(r) for r in records)
    assert "in-process-secret-1234" not in text and text.count(redaction.MARK) >= 2, text
