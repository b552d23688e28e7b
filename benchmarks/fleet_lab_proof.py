"""Judge the halved runs of fleet_lab_proof.sh against their history; write benchmarks/results/fleet-lab-proof.json.

    .venv/bin/python benchmarks/fleet_lab_proof.py REPORTS_DIR --rate 24

Reads the runs the slice stored in REPORTS_DIR/results.db (every run writes
itself there), in start order: the first ``--base`` are the runs at the full
rate, the rest on the halved link. Each halved run is assessed against the
runs before it (exactly what the report's "Against history" section and
``fabqual compare --results-db`` show).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from fabqual.history.assess import assess_run
from fabqual.results.run import load_results
from fabqual.results_db import ResultsDB

RESULTS = Path(__file__).resolve().parent / "results" / "fleet-lab-proof.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path)
    parser.add_argument("--rate", type=int, default=24, help="the base rate in Mbit/s (halved for the rest)")
    parser.add_argument("--base", type=int, default=5, help="how many runs were made at the base rate")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write (default {RESULTS.name})")
    args = parser.parse_args()
    files = sorted(p for p in args.reports.glob("results-2*.json"))
    runs = [load_results(p) for p in files]
    runs.sort(key=lambda r: r["run"]["started"])
    table = []
    with ResultsDB.open(args.reports / "results.db") as db:
        for index, results in enumerate(runs):
            halved = index >= args.base
            entry = {
                "run": results["run"]["id"],
                "link_mbit": args.rate // 2 if halved else args.rate,
                "verdict": results["verdict"],
                "metrics": {m["metric"]: round(m["value"], 4) for m in results["metrics"]},
                "thresholds_passed": all(m["passed"] for m in results["metrics"]),
            }
            if halved:
                assessment = assess_run(db, results)
                entry["regressed_against_history"] = sorted(m.metric for m in assessment.regressions)
                entry["baselines"] = {
                    m.metric: {"median": round(m.baseline.median, 4), "allowed": round(m.baseline.allowed, 4),
                               "samples": m.baseline.samples, "change": round(m.change or 0.0, 3)}
                    for m in assessment.metrics if m.baseline is not None
                }  # fmt: skip
            table.append(entry)
    report = {
        "proof": "history-based regression flags on the emulated lab",
        "slice": "tests/acceptance/test_nvme_fio.py::test_fio[tr=rdma-rw=randread-bs=128k-qd=1], fio runtime 10 s",
        "method": f"tc tbf on eth1 of both guests at {args.rate} Mbit/s for the first {args.base} runs, then"
        f" {args.rate // 2} Mbit/s; thresholds profile 'emulated'; baseline = median and 1.4826 x MAD of the"
        " last 10 passing runs on the same versions, flag beyond max(3 sigma, 10 %) on the bad side",
        "command": f"bash benchmarks/fleet_lab_proof.sh {args.base} {len(runs) - args.base} {args.rate}",
        "runs": table,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
