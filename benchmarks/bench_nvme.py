"""Benchmark: fabqual's reported fio IOPS and perftest bandwidth against the same tools run by hand.

On the emulated lab's ``nvmet_rdma`` link (nvmet-rdma over rxe between the two
guests, a null_blk namespace), brought up by fabqual's own driver:

1. fio: fabqual's ``run_fio`` (its command line, its parser) against ``fio``
   typed by hand through ``fabqual lab ssh ini -- fio ...`` with the usual
   options, its JSON read here with nothing but ``json``;
2. perftest ``ib_write_bw``: fabqual's ``run_perftest`` against a server and a
   client started by hand through ``fabqual lab ssh``, the client's table row
   read here with a plain split;
3. per workload the median of the per-round ratios fabqual / by hand (each
   round's two runs share that moment's load), and median(fabqual) /
   median(by hand) for reference; the goal is ≥ 0.97 (fabqual must not cost or
   misreport throughput).

The two sides alternate which goes first in each round, so drift and load from
other work on the shared machine fall on both alike. Writes
benchmarks/results/nvme.json and prints it.

    python benchmarks/bench_nvme.py [--rounds 3] [--seconds 8]    # with the repository's .venv active

Needs the shared lab running (``fabqual lab up``); it is never started or stopped here.
Not a timed test: the numbers depend on the machine and its load (recorded too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fabqual.errors import FabqualError
from fabqual.executors.base import Executor
from fabqual.executors.ssh import SshExecutor
from fabqual.handles import NvmeNamespace, RdmaPair
from fabqual.lab import EmulatedLab
from fabqual.links.base import LinkContext, driver_for
from fabqual.tools.fio import run_fio
from fabqual.topology import load_topology

RESULTS = Path(__file__).resolve().parent / "results" / "nvme.json"
GOAL = 0.97
FIO_WORKLOADS = (("randread", "4k", 16), ("read", "128k", 4))
PERFTEST_SIZE = 65536
HAND_PORT = 18555


def by_hand(node: str, command: str, timeout: float = 600.0) -> str:
    """One command as an operator types it: ``fabqual lab ssh NODE -- CMD``; its stdout."""
    argv = [sys.executable, "-m", "fabqual.cli", "lab", "ssh", node, "--", command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise FabqualError(f"by hand on {node}: `{command}` exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


def fio_by_hand(node: str, device: str, rw: str, bs: str, qd: int, seconds: int) -> float:
    command = (
        f"fio --name=hand --filename={device} --rw={rw} --bs={bs} --iodepth={qd} --ioengine=libaio"
        f" --direct=1 --runtime={seconds} --time_based --output-format=json"
    )
    report = json.loads(by_hand(node, command))
    iops = float(report["jobs"][0]["read"]["iops"])
    if iops <= 0:
        raise FabqualError(f"fio by hand reported {iops} IOPS for {rw} {bs} qd{qd}")
    return iops


def write_bw_by_hand(pair: RdmaPair, iterations: int) -> float:
    """ib_write_bw server on the target guest, client on the host guest; Gb/s from the client's row."""
    server, client = pair.server, pair.client
    common = f"-F --report_gbits -s {PERFTEST_SIZE} -n {iterations} -p {HAND_PORT}"
    by_hand(
        server.node,
        f"nohup timeout 300 ib_write_bw -d {server.device} -x {server.gid_index} {common}"
        " > /tmp/hand-bw.log 2>&1 < /dev/null & sleep 2",
    )
    try:
        out = by_hand(
            client.node, f"ib_write_bw -d {client.device} -x {client.gid_index} {common} {shlex.quote(server.address)}"
        )
    finally:
        by_hand(server.node, "pkill -x ib_write_bw; rm -f /tmp/hand-bw.log; true")
    # The result row: "#bytes #iterations BW peak BW average MsgRate".
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == [str(PERFTEST_SIZE)]]
    if not rows:
        raise FabqualError(f"ib_write_bw by hand printed no {PERFTEST_SIZE}-byte row:\n{out}")
    return float(rows[-1][3])


def compare(rounds: int, fabqual: Callable[[], float], hand: Callable[[], float]) -> dict[str, Any]:
    ours: list[float] = []
    theirs: list[float] = []
    for index in range(rounds):
        pair = [(ours, fabqual), (theirs, hand)]
        for values, run in pair if index % 2 == 0 else reversed(pair):
            values.append(run())
    ratio = statistics.median(ours) / statistics.median(theirs)
    # Each round's two runs share the machine's load of that moment; their ratio cancels the
    # drift that swings single runs by ±30 % on this shared host, so it is what the goal judges.
    paired = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    return {
        "fabqual": [round(v, 3) for v in ours],
        "by_hand": [round(v, 3) for v in theirs],
        "ratio_of_medians": round(ratio, 4),
        "median_paired_ratio": round(paired, 4),
        "meets_goal": paired >= GOAL,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="fio runtime per run")
    parser.add_argument("--iterations", type=int, default=1000, help="ib_write_bw iterations per run")
    args = parser.parse_args()

    lab = EmulatedLab()
    if not lab.is_running():
        print("the emulated lab is not running: start it with `fabqual lab up`", file=sys.stderr)
        return 2
    topology = load_topology(lab.topology_path)
    executors: dict[str, Executor] = {n.name: SshExecutor.for_node(n) for n in topology.nodes}
    link = next(link for link in topology.links if link.type == "nvmet_rdma")
    driver = driver_for(LinkContext(topology, link, lambda n: executors[n]))
    started = time.monotonic()
    session = driver.up()
    results: dict[str, Any] = {"link_up_s": round(time.monotonic() - started, 1)}
    try:
        ns: NvmeNamespace = session.nvme_namespace
        pair: RdmaPair = session.rdma_pair
        host = ns.host.node
        for rw, bs, qd in FIO_WORKLOADS:

            def ours(rw: str = rw, bs: str = bs, qd: int = qd) -> float:
                result = run_fio(ns.host, filename=ns.device, rw=rw, bs=bs, iodepth=qd, runtime_s=args.seconds)
                return result.direction(rw).iops

            def theirs(rw: str = rw, bs: str = bs, qd: int = qd) -> float:
                return fio_by_hand(host, ns.device, rw, bs, qd, args.seconds)

            results[f"fio_{rw}_{bs}_qd{qd}_iops"] = compare(args.rounds, ours, theirs)
            print(rw, bs, qd, results[f"fio_{rw}_{bs}_qd{qd}_iops"], flush=True)

        def ours_bw() -> float:
            return pair.perftest("ib_write_bw", size=PERFTEST_SIZE, iterations=args.iterations).bw_gbps

        results["ib_write_bw_64k_gbps"] = compare(args.rounds, ours_bw, lambda: write_bw_by_hand(pair, args.iterations))
        print("ib_write_bw", results["ib_write_bw_64k_gbps"], flush=True)
    finally:
        driver.down()
        for executor in executors.values():
            executor.close()

    record = {
        "benchmark": "nvme",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "link": {"name": link.name, "type": link.type, "device": ns.device, "facts": session.facts},
        "settings": {
            "rounds": args.rounds,
            "fio_seconds": args.seconds,
            "perftest_iterations": args.iterations,
            "goal": GOAL,
        },
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
