"""Benchmark: import 1,000 stored runs into the results database and render the fleet page from them.

The runs are nights made from a real emulated-lab results file
(fixtures/outputs/results/lab-nvmet_rdma-randread-128k.json) widened to the
size of a whole nightly: its rows and metrics are repeated over every fio
workload the acceptance suite runs (4 rw x 3 bs x 2 qd) on two links, so a
run holds 48 rows and 144 metrics, plus the real inventory of both guests.
1,000 runs = 250 nights on each of 4 racks. Both the import and the page are
timed as a user runs them (``fabqual results import FILE...`` and ``fabqual
fleet``, one process each), on SQLite and on a throwaway PostgreSQL cluster.
Writes benchmarks/results/fleet.json and prints it.

    .venv/bin/python benchmarks/bench_fleet.py [--runs 1000]

Not a timed test: the numbers depend on the machine and its load (recorded too).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from fabqual.testing.nights import night
from fabqual.testing.postgres import postgres_bin, throwaway_cluster

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "fixtures" / "outputs" / "results" / "lab-nvmet_rdma-randread-128k.json"
RESULTS = Path(__file__).resolve().parent / "results" / "fleet.json"
RACKS = 4


def nightly_template() -> dict[str, Any]:
    """The real run, widened to every fio workload on two links (fc0 borrows roce0's numbers)."""
    real = json.loads(REAL.read_text())
    tests, metrics = [], []
    for link, link_type, tr in (("roce0", "nvmet_rdma", "rdma"), ("fc0", "fc_nvme", "fc")):
        for rw in ("read", "write", "randread", "randwrite"):
            for bs in ("4k", "128k", "1m"):
                for qd in ("1", "32"):
                    nodeid = f"tests/acceptance/test_nvme_fio.py::test_fio[tr={tr}-rw={rw}-bs={bs}-qd={qd}]"
                    test = copy.deepcopy(real["tests"][0])
                    test.update(nodeid=nodeid, link=link, link_type=link_type)
                    tests.append(test)
                    for metric in real["metrics"][:3]:
                        metrics.append(
                            {**metric, "link": link, "link_type": link_type, "test": nodeid,
                             "context": {"rw": rw, "bs": bs, "qd": qd}}
                        )  # fmt: skip
    return {**real, "tests": tests, "metrics": metrics}


def fabqual(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fabqual.cli", *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def measure(url: str, files: list[str], page: Path) -> dict[str, float]:
    imported = fabqual("results", "import", "--results-db", url, *files)
    again = fabqual("results", "import", "--results-db", url, *files)  # the second run finds them all stored
    rendered = fabqual("fleet", "--results-db", url, "-o", str(page))
    return {
        "import_s": round(imported, 2),
        "import_per_run_ms": round(1000 * imported / len(files), 1),
        "reimport_all_known_s": round(again, 2),
        "fleet_page_s": round(rendered, 2),
        "fleet_page_bytes": page.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    template = nightly_template()
    load_before = os.getloadavg()[0]
    t0 = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="fabqual-bench-fleet-") as tmp:
        files = []
        for index in range(args.runs):
            rack = f"rack-{index % RACKS}"
            results = night(template, index, t0 + timedelta(days=index // RACKS, minutes=index % RACKS), rack=rack)
            path = Path(tmp) / f"results-{index:04d}.json"
            path.write_text(json.dumps(results))
            files.append(str(path))
        sqlite = measure(f"sqlite:///{tmp}/results.db", files, Path(tmp) / "fleet-sqlite.html")
        sqlite["database_bytes"] = Path(f"{tmp}/results.db").stat().st_size
        postgres: dict[str, Any] = {"skipped": "Debian's postgresql is not installed"}
        if postgres_bin() is not None:
            with throwaway_cluster() as url:
                postgres = measure(url, files, Path(tmp) / "fleet-postgres.html")
    report = {
        "benchmark": "results_db_import_and_fleet_page",
        "runs": args.runs,
        "racks": RACKS,
        "rows_per_run": len(template["tests"]),
        "metrics_per_run": len(template["metrics"]),
        "method": "one `fabqual results import FILE...` process for all files, then the same again (all known),"
        " then one `fabqual fleet` (30 runs per rack plotted, baselines over 10); wall time incl. interpreter start",
        "sqlite": sqlite,
        "postgresql": postgres,
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "sqlalchemy": version("sqlalchemy"),
            "psycopg": version("psycopg"),
            "postgresql_bin": str(postgres_bin()),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
