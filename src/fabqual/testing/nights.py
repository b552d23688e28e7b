"""Nights of results made from one real results file, for history tests and the fleet benchmark.

Each night is a copy of a real run (its rows, inventory and thresholds) with
its own run id and start time and every metric scaled by ``factor`` in the
metric's good direction (``factor=0.5`` halves bandwidth and IOPS and doubles
latency), plus a deterministic ±``noise`` wobble so a baseline has spread.
Verdicts are recomputed from the scaled values against the real thresholds.
"""

from __future__ import annotations

import copy
import random
from datetime import datetime, timedelta
from typing import Any

from fabqual.results.run import link_type_verdicts, overall_verdict


def night(
    template: dict[str, Any],
    index: int,
    started: datetime,
    *,
    factor: float = 1.0,
    noise: float = 0.03,
    rack: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    results = copy.deepcopy(template)
    wobble = random.Random(f"{seed}-{index}")
    run = results["run"]
    run["id"] = f"{started:%Y%m%dT%H%M%SZ}-{index}"
    run["started"] = started.isoformat(timespec="seconds")
    run["finished"] = (started + timedelta(seconds=float(run.get("duration_s") or 60))).isoformat(timespec="seconds")
    if rack:
        run["topology"] = rack
    failed_tests = set()
    for metric in results["metrics"]:
        scale = factor * (1 + wobble.uniform(-noise, noise))
        value = metric["value"] * scale if metric["comparison"] == ">=" else metric["value"] / scale
        metric["value"] = value
        threshold = metric.get("threshold")
        if threshold is not None:
            metric["passed"] = value >= threshold if metric["comparison"] == ">=" else value <= threshold
            if threshold:
                ratio = value / threshold
                metric["margin"] = ratio - 1 if metric["comparison"] == ">=" else 1 - ratio
        if not metric["passed"]:
            failed_tests.add(metric["test"])
    for test in results["tests"]:
        if test["nodeid"] in failed_tests:
            test.update(outcome="failed", reason="a metric missed its threshold")
    results["verdicts"] = link_type_verdicts(results["tests"], results.get("verdicts", {}).keys())
    results["verdict"] = overall_verdict(results["verdicts"])
    return results
