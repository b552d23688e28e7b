"""The rack lock and the nightly command: two runs on one topology never collide."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabqual.run.lock import RackLockedError, lock_path, rack_lock
from tests.self.integration.test_report import FAKE_SUITE, RACK

HOLD = """
import sys, time
from fabqual.run.lock import rack_lock
with rack_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(name: str, seconds: float, env: dict[str, str]) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, name, str(seconds)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("FABQUAL_CACHE", str(tmp_path / "cache"))
    return dict(os.environ)


def test_second_holder_is_refused_with_one_line_naming_the_first(cache: dict[str, str]) -> None:
    holder = hold_lock("rack-a", 30, cache)
    try:
        with pytest.raises(RackLockedError) as refused, rack_lock("rack-a"):
            pass
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"rack 'rack-a' is locked by pid {holder.pid} on host ")
        assert message.endswith("retry later or pass --wait SECONDS")
        with rack_lock("rack-b"):  # another rack is independent
            pass
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_released_when_the_holder_is_killed(cache: dict[str, str]) -> None:
    """flock belongs to the process: SIGKILL frees the rack, no stale lock file to clean."""
    holder = hold_lock("rack-a", 30, cache)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with rack_lock("rack-a") as path:
        assert path == lock_path("rack-a")
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_waiting_gets_the_lock_when_the_holder_finishes(cache: dict[str, str]) -> None:
    holder = hold_lock("rack-a", 1.5, cache)
    start = time.monotonic()
    with rack_lock("rack-a", wait=30):
        waited = time.monotonic() - start
    holder.wait()
    assert 0.5 < waited < 10


def nightly(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "fabqual.cli", "nightly", "--topology", "rack.yaml", "--tests", "test_fake.py"]
    command += [*args, "--", "--no-health-gate", "-q", "-p", "no:cacheprovider", "-k", "test_bw and fc"]
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_nightly_runs_on_one_rack(tmp_path: Path, cache: dict[str, str]) -> None:
    """Real `fabqual nightly` processes: a second one refuses (exit 3), a third waits; results stay intact."""
    (tmp_path / "rack.yaml").write_text(RACK)
    (tmp_path / "test_fake.py").write_text(FAKE_SUITE)
    env = {**cache, "FQ_SECRET_PW": "x", "FQ_SLEEP": "1.5"}  # each of the 3 rows sleeps: the run holds the lock ~5 s
    env.pop("FABQUAL_RESULTS_FILE", None)
    first = nightly(tmp_path, env)
    lock = lock_path("report-rack", Path(cache["FABQUAL_CACHE"]))
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = nightly(tmp_path, env, "--no-doctor")
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 3, out + err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"fabqual nightly: rack 'report-rack' is locked by pid {first.pid} on host ")
    assert " since 20" in line and line.endswith("retry later or pass --wait SECONDS")
    waiting = nightly(tmp_path, env, "--no-doctor", "--wait", "120")
    first_out, first_err = first.communicate(timeout=300)
    wait_out, wait_err = waiting.communicate(timeout=300)
    assert first.returncode == 0, first_out + first_err
    assert waiting.returncode == 0, wait_out + wait_err
    assert "waiting up to 120s" in wait_err
    runs = sorted((tmp_path / "reports").glob("results-2*.json"))
    assert len(runs) == 2
    ids = [json.loads(p.read_text())["run"]["id"] for p in runs]
    assert len(set(ids)) == 2 and all(p.name == f"results-{i}.json" for p, i in zip(runs, ids, strict=True))
    for path in runs:
        data = json.loads(path.read_text())
        assert data["verdicts"]["fc_nvme"]["passed"] == 3 and len(data["metrics"]) == 3
    assert len(list((tmp_path / "reports").glob("qualification-2*.html"))) == 2
    assert len(list((tmp_path / "reports").glob("junit-2*.xml"))) == 2
    assert "fabqual nightly: PASS: 3 passed, 0 failed, 0 errors; exit 0" in first_out
    assert (tmp_path / "reports" / "junit.xml").exists() and (tmp_path / "reports" / "qualification.html").exists()


def test_nightly_exit_codes(tmp_path: Path, cache: dict[str, str]) -> None:
    """1 when a test failed, 2 when the topology file is wrong."""
    (tmp_path / "rack.yaml").write_text(RACK)
    (tmp_path / "test_fake.py").write_text(FAKE_SUITE)
    env = {**cache, "FQ_SECRET_PW": "x"}
    command = [sys.executable, "-m", "fabqual.cli", "nightly", "--topology", "rack.yaml", "--tests", "test_fake.py"]
    failing = subprocess.run(
        [*command, "--no-doctor", "--", "--no-health-gate", "-q", "-k", "ipofc"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failing.returncode == 1, failing.stdout + failing.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "fabqual.cli", "nightly", "--topology", "missing.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "missing.yaml" in bad.stderr
