"""The report's fabric-error table: a row's throughput beside the error counters that rose during it."""

from __future__ import annotations

import json
from typing import Any

from fabqual.measure import Measurement
from fabqual.report.document import fabric_errors_section

ROW = "tests/acceptance/test_rdma_perftest.py::test_bandwidth[tr=pvrdma-test=ib_write_bw-size=64k]"


def _metric(metric: str, value: float, unit: str, threshold: float, comparison: str, **context: str) -> dict[str, Any]:
    measured = Measurement("pvrdma0", "pvrdma", metric, value, unit, threshold, comparison, context)  # type: ignore[arg-type]
    return {**json.loads(measured.to_json()), "test": ROW}


def test_a_row_shows_its_throughput_and_only_the_counters_that_rose() -> None:
    """Counters read at 0 are counted, not listed; one that rose past its bound fails the row's verdict."""
    metrics = [
        _metric("bw_gbps", 0.41, "Gb/s", 0.05, ">=", size="64k"),
        _metric("fabric_errors", 0, "count", 0, "<=", port="tgt rxe0/1 hw_counters", counter="retry_exceeded_err"),
        _metric("fabric_errors", 129, "count", 1024, "<=", port="ini rxe0/1 hw_counters", counter="duplicate_request"),
        _metric("fabric_errors", 1, "count", 0, "<=", port="tgt rxe0/1 hw_counters", counter="send_err"),
    ]
    html = fabric_errors_section(metrics)
    assert "Fabric errors beside throughput" in html and "test_bandwidth[tr=pvrdma-test=ib_write_bw-size=64k]" in html
    assert "bw_gbps 0.41 Gb/s" in html and '<td class="num">3</td>' in html
    assert "ini rxe0/1 hw_counters duplicate_request +129 (&lt;= 1024)" in html
    assert "tgt rxe0/1 hw_counters send_err +1 (&lt;= 0)" in html and "retry_exceeded_err" not in html
    assert '<tr class="fail">' in html and ">FAIL<" in html


def test_rows_without_counters_leave_no_table() -> None:
    """A run whose links keep no counters (fcloop) shows no empty section."""
    assert fabric_errors_section([_metric("bw_gbps", 0.41, "Gb/s", 0.05, ">=")]) == ""
