"""``fabqual compare``: each metric against the previous run and a baseline, regressions flagged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fabqual.measure import Measurement
from fabqual.results.compare import compare_runs
from fabqual.results.run import SCHEMA, write_results

# A run as the report plugin writes it: Measurements through to_json(), as check_metric records them.
BASE = [
    ("fc0", "fc_nvme", "iops", 6700.0, "IOPS", 5000.0, ">=", {"bs": "4k", "rw": "randread"}),
    ("fc0", "fc_nvme", "bw", 120.0, "MB/s", 100.0, ">=", {"bs": "128k", "rw": "write"}),
    ("roce0", "nvmet_rdma", "lat", 250.0, "us", 1000.0, "<=", {"bs": "4k"}),
    ("ipofc0", "ipofc", "throughput", 485.0, "Mbit/s", 100.0, ">=", {"mtu": "9000"}),
]


def run_file(tmp: Path, run_id: str, changes: dict[str, float] | None = None) -> Path:
    metrics = []
    for link, link_type, metric, value, unit, threshold, cmp, context in BASE:
        value = (changes or {}).get(f"{link}/{metric}", value)
        m = Measurement(link, link_type, metric, value, unit, threshold, cmp, context)  # type: ignore[arg-type]
        metrics.append({**json.loads(m.to_json()), "test": f"t::{metric}"})
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "run": {"id": run_id, "topology": "rack"},
        "verdict": "PASS",
        "verdicts": {},
        "tests": [],
        "metrics": metrics,
    }
    return write_results(results, tmp / f"results-{run_id}.json", latest=False)


def fabqual(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fabqual.cli", "compare", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_exactly_the_worse_metric_is_flagged(tmp_path: Path) -> None:
    """IOPS 20 % lower (bad), throughput 30 % higher (good), latency 5 % up (inside 10 %): one flag."""
    a = run_file(tmp_path, "20240101T000000Z-1")
    b = run_file(tmp_path, "20240102T000000Z-1", {"fc0/iops": 5360.0, "ipofc0/throughput": 630.0, "roce0/lat": 262.0})
    result = fabqual(str(a), str(b))
    assert result.returncode == 1, result.stdout + result.stderr
    flagged = [line.split()[0] for line in result.stdout.splitlines() if "REGRESSED" in line]
    assert flagged == ["fc0/iops[bs=4k,rw=randread]"]
    assert result.stdout.splitlines()[-1] == "1 metric(s) regressed: fc0/iops[bs=4k,rw=randread]"


def test_latency_regresses_upwards(tmp_path: Path) -> None:
    a = run_file(tmp_path, "20240101T000000Z-1")
    b = run_file(tmp_path, "20240102T000000Z-1", {"roce0/lat": 300.0})
    rows = compare_runs(json.loads(b.read_text()), json.loads(a.read_text()))
    assert [r.key for r in rows if r.status == "REGRESSED"] == ["roce0/lat[bs=4k]"]


def test_no_regression_exits_zero(tmp_path: Path) -> None:
    a = run_file(tmp_path, "20240101T000000Z-1")
    b = run_file(tmp_path, "20240102T000000Z-1", {"fc0/iops": 6500.0})
    result = fabqual(str(a), str(b))
    assert result.returncode == 0, result.stdout
    assert "no regression among 4 metric(s)" in result.stdout


def test_baseline_catches_a_slow_drift_the_previous_run_does_not(tmp_path: Path) -> None:
    """8 % below the previous run is allowed, but 19 % below the baseline is not."""
    base = run_file(tmp_path, "20240101T000000Z-1")
    a = run_file(tmp_path, "20240102T000000Z-1", {"fc0/bw": 106.0})
    b = run_file(tmp_path, "20240103T000000Z-1", {"fc0/bw": 97.5})
    result = fabqual(str(a), str(b), "--baseline", str(base))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "REGRESSED" in line]
    assert len(lines) == 1 and lines[0].startswith("fc0/bw[") and lines[0].endswith("REGRESSED vs baseline")


def test_allowed_deviation_per_metric_and_default(tmp_path: Path) -> None:
    a = run_file(tmp_path, "20240101T000000Z-1")
    b = run_file(tmp_path, "20240102T000000Z-1", {"fc0/iops": 5360.0})
    assert fabqual(str(a), str(b), "--max-deviation", "0.25").returncode == 0
    deviations = tmp_path / "deviations.yaml"
    deviations.write_text("deviations:\n  fc_nvme.iops: 0.3\n")
    result = fabqual(str(a), str(b), "--deviations", str(deviations))
    assert result.returncode == 0, result.stdout
    assert "±30%" in result.stdout


def test_a_lost_metric_is_listed_as_missing(tmp_path: Path) -> None:
    a = run_file(tmp_path, "20240101T000000Z-1")
    data = json.loads(a.read_text())
    data["metrics"] = data["metrics"][1:]
    data["run"]["id"] = "20240102T000000Z-1"
    b = write_results(data, tmp_path / "b.json", latest=False)
    result = fabqual(str(a), str(b))
    assert "MISSING" in result.stdout and result.returncode == 0


def test_unreadable_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    a = run_file(tmp_path, "20240101T000000Z-1")
    result = fabqual(str(a), str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fabqual: results file {tmp_path / 'nope.json'} does not exist; pass a reports/results-*.json file"
    ]
    other = tmp_path / "other.json"
    other.write_text('{"schema": "something-else"}')
    assert "has schema 'something-else'" in fabqual(str(a), str(other)).stderr
    assert fabqual(str(a), str(a), "--max-deviation", "lots").returncode == 2
