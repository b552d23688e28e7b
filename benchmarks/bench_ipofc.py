"""Benchmark: IP over the IPoFC link against the raw SCSI path under it, in one run.

On the emulated lab (software FCoE between the guests, LIO tcm_fc):

1. the path's ceiling: an ``rd_mcp`` ramdisk exported over the same FCoE ports
   and driven by the stdlib SG_IO sender (one command in flight, 64 KiB and
   128 KiB READs and WRITEs): MB/s and commands/s;
2. the IPoFC link brought up by its driver: raw SG_IO WRITEs of empty tunnel
   frames to the tunnel LUN (the TCMU handler's command rate), then at MTU 1500
   and 9000 iperf3 TCP both ways and ping;
3. ratios (goal: IPoFC ≥ 50 % of the raw path) and the original's 88/485 Mbit/s.

Writes benchmarks/results/ipofc.json (``--no-offload``: ipofc-no-offload.json,
the TUN devices without checksum/TSO offload, as the original ran) and prints it.

    /work/venv-dev/bin/python benchmarks/bench_ipofc.py [--seconds 10] [--no-offload]

Not a timed test: the numbers depend on the machine and its load (recorded too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from fabqual.drivers import sg_sender
from fabqual.drivers.journal import Journal
from fabqual.errors import FabqualError
from fabqual.executors.base import Executor
from fabqual.executors.ssh import SshExecutor
from fabqual.ipofc import framing
from fabqual.lab import EmulatedLab
from fabqual.links.base import LinkContext, driver_for
from fabqual.links.ipofc import export_over_fcoe, fcoe_netdev, ramdisk
from fabqual.links.tunnel_handle import IpTunnel
from fabqual.tools.iperf3 import run_iperf3
from fabqual.tools.ping import run_ping
from fabqual.topology import load_topology
from fabqual.topology.model import IpofcParams, Topology

RESULTS = Path(__file__).resolve().parent / "results" / "ipofc.json"
REMOTE_SENDER = "/tmp/fabqual-bench-sg-sender.py"
ORIGINAL_MBPS = {1500: 88.0, 9000: 485.0}  # benjojo's IPoverFC on 8G QLogic HBAs (research note §1.8)
SIZES = (65536, 131072)


def loop(executor: Executor, device: str, direction: str, length: int, count: int, data: bytes = b"") -> dict[str, Any]:
    """``count`` back-to-back SG_IO READ(10)/WRITE(10) of ``length`` bytes at LBA 0."""
    blocks = length // 512
    opcode = "28" if direction == "r" else "2a"
    cdb = f"{opcode}000000000000{blocks:04x}00"  # READ/WRITE(10) at LBA 0
    extra = f" --data {data.hex()}" if data else ""
    out = executor.run(
        f"python3 {REMOTE_SENDER} {device} --loop {direction} --length {length} --count {count} --cdb {cdb}{extra}",
        timeout=600,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if result["errors"]:
        raise FabqualError(f"{executor.node}: {result['errors']} of {count} SG_IO commands on {device} failed")
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def raw_ceiling(topology: Topology, executors: dict[str, Executor], count: int) -> dict[str, Any]:
    """READ/WRITE loops on an rd_mcp LUN over the FCoE ports the ipofc link uses."""
    link = next(link for link in topology.links if link.type == "ipofc")
    context = LinkContext(topology, link, lambda n: executors[n])
    target, target_netdev = fcoe_netdev(context, "target")
    initiator, initiator_netdev = fcoe_netdev(context, "initiator")
    journal = Journal()
    try:
        lun = export_over_fcoe(
            target,
            initiator,
            journal,
            ramdisk("fq_bench_rd", 64 << 20),
            target_netdev=target_netdev,
            initiator_netdev=initiator_netdev,
            vendor="LIO-ORG",
            model="RAMDISK-MCP",
        )
        results = {}
        for size in SIZES:
            results[f"write_{size // 1024}k"] = loop(initiator, lun.sg.path, "w", size, count)
            results[f"read_{size // 1024}k"] = loop(initiator, lun.sg.path, "r", size, count)
        return results
    finally:
        journal.undo_all()


def tunnel_run(tunnel: IpTunnel, seconds: int, count: int) -> dict[str, Any]:
    initiator, target = tunnel.initiator.executor, tunnel.target.executor
    out: dict[str, Any] = {}
    for mtu in (1500, 9000):
        tunnel = tunnel.set_mtu(mtu)
        runs: dict[str, Any] = {}
        for name, reverse in (("tcp_to_target", False), ("tcp_to_initiator", True)):
            result = run_iperf3(target, initiator, address=tunnel.target.address, reverse=reverse, seconds=seconds)
            runs[name] = {"mbps": round(result.mbps, 2), "retransmits": result.retransmits}
        ping = run_ping(initiator, tunnel.target.address, 20, 0.2, mtu - 28)
        runs["ping"] = {
            "size": mtu - 28,
            "loss_pct": ping.loss_pct,
            "avg_ms": ping.rtt_avg_ms,
            "max_ms": ping.rtt_max_ms,
        }
        out[f"mtu_{mtu}"] = runs
    # Last, so it cannot disturb the IP numbers: the TCMU daemon's WRITE rate with frames carrying nothing.
    empty = framing.encode_frame(framing.Frame(seq=0))
    out["tunnel_lun_write_empty_frames_64k"] = loop(initiator, tunnel.facts["sg_device"], "w", 65536, count, empty)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="iperf3 duration per run")
    parser.add_argument("--commands", type=int, default=200, help="SG_IO commands per raw loop")
    parser.add_argument("--no-offload", action="store_true", help="TUN devices without checksum/TSO offload")
    args = parser.parse_args()
    results_file = RESULTS.with_name("ipofc-no-offload.json") if args.no_offload else RESULTS
    lab = EmulatedLab()
    if not lab.is_running():
        raise SystemExit("the emulated lab is not running: `fabqual lab up` first")
    topology = load_topology(lab.topology_path)
    executors: dict[str, Executor] = {n.name: SshExecutor.for_node(n) for n in topology.nodes}
    for executor in executors.values():
        executor.put(Path(sg_sender.__file__), REMOTE_SENDER)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        raw = raw_ceiling(topology, executors, args.commands)
        link = next(link for link in topology.links if link.type == "ipofc")
        assert isinstance(link.params, IpofcParams)
        link = replace(link, params=replace(link.params, offload=not args.no_offload))
        driver = driver_for(LinkContext(topology, link, lambda n: executors[n]))
        try:
            session = driver.up()
            tunnel = tunnel_run(session.ip_tunnel, args.seconds, args.commands)
        finally:
            driver.down()
    finally:
        for executor in executors.values():
            executor.run(f"rm -f {REMOTE_SENDER}", timeout=30, check=False)
            executor.close()

    raw_mbit = {k: v["mb_per_s"] * 8 for k, v in raw.items()}
    ceiling_mbit = min(raw_mbit["read_64k"], raw_mbit["write_64k"])  # one direction of TCP needs both paths
    ratios = {}
    for mtu in (1500, 9000):
        for direction in ("tcp_to_target", "tcp_to_initiator"):
            mbps = tunnel[f"mtu_{mtu}"][direction]["mbps"]
            ratios[f"mtu_{mtu}_{direction}"] = {
                "of_raw_64k": round(mbps / ceiling_mbit, 3),
                "of_original": round(mbps / ORIGINAL_MBPS[mtu], 3),
            }
    result = {
        "benchmark": "ipofc",
        "when": started,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "load_avg_1m": os.getloadavg()[0]},
        "carrier": session.ip_tunnel.carrier,
        "facts": session.ip_tunnel.facts,
        "raw_path_rd_mcp_over_fcoe": raw,
        "raw_ceiling_mbit_64k": round(ceiling_mbit, 2),
        "ipofc": tunnel,
        "ratios": ratios,
        "goal": "IPoFC >= 50 % of the raw path",
        "original_mbps": ORIGINAL_MBPS,
        "note": (
            "emulated lab: QEMU TCG guests on a shared 2-core host, FCoE over a QEMU UDP socket link;"
            " the raw path is one SG_IO command in flight, as the original ran its tunnel"
        ),
    }
    results_file.parent.mkdir(exist_ok=True)
    results_file.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
