"""Benchmark: IP over the IPoFC link against the raw SCSI path under it, like for like, in paired rounds.

On the emulated lab (software FCoE between the guests, LIO tcm_fc), with the
IPoFC link brought up by its driver (offload on unless ``--no-offload``):

1. the raw path: an ``rd_mcp`` ramdisk exported as LUN 1 of the same tcm_fc TPG
   as the tunnel LUN (same FCoE ports, same initiator SCSI host), driven by the
   stdlib SG_IO sender with the tunnel's own command size (the initiator daemon's
   max transfer, read from its log), the tunnel's in-flight count for the
   direction that carries the data (WRITEs to the target, READs back) and the
   same duration as each iperf3 run;
2. ``--rounds`` paired rounds, alternating which of the pair runs first: for MTU
   1500 and 9000 and each direction, iperf3 TCP through the tunnel and the raw
   loop; the ratio tunnel/raw per pair, then the median over rounds;
3. ping RTT through the tunnel against the raw path's single-command round trip
   (one 4 KiB WRITE / READ in flight), and host CPU (both QEMU processes' user +
   system time) per Gbit/s for the tunnel and the raw path.

Writes benchmarks/results/ipofc.json (``--no-offload``: ipofc-no-offload.json)
and prints it.

    .venv/bin/python benchmarks/bench_ipofc.py [--seconds 10] [--rounds 5] [--no-offload]

Not a timed test: the numbers depend on the machine and its load (recorded too);
the host is shared, which is why every ratio is taken within a pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from fabqual.drivers import sg_sender
from fabqual.drivers.fcoe import colon_wwn
from fabqual.drivers.journal import Journal
from fabqual.drivers.lio import Lio, Tpg
from fabqual.drivers.rundir import private_dir
from fabqual.drivers.scsi_generic import sg_devices, wait_sg_device
from fabqual.errors import FabqualError
from fabqual.executors.base import Executor
from fabqual.executors.ssh import SshExecutor
from fabqual.handles import IpTunnel
from fabqual.ipofc import initiator_daemon
from fabqual.lab import EmulatedLab
from fabqual.links.base import LinkContext, driver_for
from fabqual.tools.iperf3 import run_iperf3
from fabqual.tools.ping import run_ping
from fabqual.topology import load_topology
from fabqual.topology.model import IpofcParams

RESULTS = Path(__file__).resolve().parent / "results" / "ipofc.json"
ORIGINAL_MBPS = {1500: 88.0, 9000: 485.0}  # benjojo's IPoverFC on 8G QLogic HBAs (research note §1.8)
RAW_LUN = 1
RAW_SIZE = 64 << 20
SINGLE = 4096  # the raw path's single command: about what one ping's frame occupies
DIRECTIONS = {"tcp_to_target": ("w", False), "tcp_to_initiator": ("r", True)}  # raw direction, iperf3 -R
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sender_path(executor: Executor) -> str:
    """Where the SG_IO sender is uploaded: the run's private directory on the node."""
    return f"{private_dir(executor)}/sg_sender.py"


def rw_cdb(direction: str, length: int) -> str:
    """READ(10)/WRITE(10) of ``length`` bytes at LBA 0, as hex."""
    return f"{'28' if direction == 'r' else '2a'}000000000000{length // 512:04x}00"


def raw_loop(
    executor: Executor, device: str, direction: str, length: int, seconds: float, inflight: int
) -> dict[str, Any]:
    """``inflight`` SG_IO commands of ``length`` bytes kept in flight on ``device`` for ``seconds``."""
    out = executor.run(
        f"python3 {sender_path(executor)} {device} --loop {direction} --length {length} --seconds {seconds}"
        f" --inflight {inflight} --cdb {rw_cdb(direction, length)}",
        timeout=seconds + 300,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    # Failed commands are part of the measurement (FCoE here drops frames under bursts and has no
    # recovery; the tunnel retries its WRITEs on the same path): they are counted, and only the
    # commands that completed carry bytes. A loop where none completed measures nothing.
    if not result["commands"]:
        raise FabqualError(f"{executor.node}: no raw command on {device} completed: {result}")
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def export_raw_lun(target: Executor, initiator: Executor, journal: Journal, facts: dict[str, str]) -> str:
    """An rd_mcp ramdisk as LUN 1 of the tunnel's tcm_fc TPG; its /dev/sgN on the initiator's same SCSI host."""
    lio = Lio(target, journal)
    store = lio.ramdisk("fq_bench_rd", RAW_SIZE)
    tpg = Tpg("fc", colon_wwn(facts["target_wwpn"]))  # the link's own TPG: only a LUN and its mapping are added
    lio.export(tpg, RAW_LUN, store)
    lio.allow(tpg, facts["initiator_wwpn"], RAW_LUN)
    tunnel_sg = next(d for d in sg_devices(initiator) if f"/dev/{d.name}" == facts["sg_device"])
    raw = wait_sg_device(initiator, vendor="LIO-ORG", model="RAMDISK-MCP", host=tunnel_sg.host, timeout=60)
    return f"/dev/{raw.name}"


def tunnel_shape(processes: list[Any]) -> tuple[int, int, int]:
    """The initiator daemon's transfer size (from its log) and its READs/WRITEs in flight (its defaults)."""
    log = next(p for p in processes if "initiator" in p.name).log_tail(200)
    found = re.search(r"(\d+)-byte transfers", log)
    if not found:
        raise FabqualError(f"the initiator daemon's log names no transfer size: {log[-300:]}")
    defaults = initiator_daemon.parse_args(["--sg", "-", "--tun", "-"])
    return int(found[1]), defaults.inflight_reads, defaults.inflight_writes


def qemu_cpu_seconds(lab: EmulatedLab) -> float:
    """User + system CPU seconds both guests' QEMU processes have used so far."""
    total = 0
    for guest in lab.status().guests:
        fields = Path(f"/proc/{guest.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def measured(lab: EmulatedLab, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s result with the host CPU it cost (QEMU seconds per wall second, per Gbit/s)."""
    cpu, wall = qemu_cpu_seconds(lab), time.monotonic()
    result = run()
    cpu, wall = qemu_cpu_seconds(lab) - cpu, time.monotonic() - wall
    gbit = result["mbps"] / 1000
    result["host_cpu_per_s"] = round(cpu / wall, 3)
    result["host_cpu_per_gbit_s"] = round(cpu / wall / gbit, 2) if gbit > 0 else None
    return result


def paired_rounds(
    lab: EmulatedLab, tunnel: IpTunnel, raw_sg: str, *, seconds: int, rounds: int, shape: tuple[int, int, int]
) -> dict[str, Any]:
    """Per MTU and direction, ``rounds`` pairs (tunnel, raw) in alternating order; ratios per pair."""
    initiator, target = tunnel.initiator.executor, tunnel.target.executor
    transfer, reads, writes = shape
    address = tunnel.target.address
    pairs: dict[str, list[dict[str, Any]]] = {}
    for index in range(rounds):
        for mtu in (1500, 9000):
            tunnel = tunnel.set_mtu(mtu)
            for name, (raw_direction, reverse) in DIRECTIONS.items():
                inflight = writes if raw_direction == "w" else reads

                def ip(reverse: bool = reverse) -> dict[str, Any]:
                    got = run_iperf3(target, initiator, address=address, reverse=reverse, seconds=seconds)
                    return {"mbps": round(got.mbps, 2), "retransmits": got.retransmits}

                def raw(direction: str = raw_direction, inflight: int = inflight) -> dict[str, Any]:
                    got = raw_loop(initiator, raw_sg, direction, transfer, seconds, inflight)
                    return {**got, "mbps": round(got["mb_per_s"] * 8, 2)}

                order: list[tuple[str, Callable[[], dict[str, Any]]]] = [("tunnel", ip), ("raw", raw)]
                if index % 2:
                    order.reverse()
                pair: dict[str, Any] = {what: measured(lab, run) for what, run in order}
                pair["first"] = order[0][0]
                pair["ratio"] = round(pair["tunnel"]["mbps"] / pair["raw"]["mbps"], 3)
                pairs.setdefault(f"mtu_{mtu}_{name}", []).append(pair)
                print(
                    f"round {index + 1} MTU {mtu} {name}: tunnel {pair['tunnel']['mbps']} raw {pair['raw']['mbps']}"
                    f" Mbit/s ({pair['raw']['errors']} raw commands failed)",
                    flush=True,
                )
    return pairs


def latency(tunnel: IpTunnel, raw_sg: str) -> dict[str, Any]:
    """Ping through the tunnel vs one raw command in flight (4 KiB WRITE and READ), each for a few seconds."""
    initiator = tunnel.initiator.executor
    out: dict[str, Any] = {}
    for mtu in (1500, 9000):
        tunnel = tunnel.set_mtu(mtu)
        ping = run_ping(initiator, tunnel.target.address, 30, 0.2, 56)
        out[f"ping_mtu_{mtu}"] = {"size": 56, "loss_pct": ping.loss_pct, "avg_ms": ping.rtt_avg_ms}
    write = raw_loop(initiator, raw_sg, "w", SINGLE, 5, 1)
    read = raw_loop(initiator, raw_sg, "r", SINGLE, 5, 1)
    out["raw_single_command_ms"] = {"write_4k_median": write["median_ms"], "read_4k_median": read["median_ms"]}
    # A ping is one WRITE (request) and one held READ completing (reply): compare with a WRITE plus a READ.
    both = write["median_ms"] + read["median_ms"]
    for mtu in (1500, 9000):
        out[f"ping_mtu_{mtu}"]["over_raw_write_plus_read"] = round(out[f"ping_mtu_{mtu}"]["avg_ms"] / both, 2)
    return out


def summary(pairs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, runs in pairs.items():
        mtu = int(key.split("_")[1])
        tunnel = statistics.median(r["tunnel"]["mbps"] for r in runs)
        out[key] = {
            "median_paired_ratio": round(statistics.median(r["ratio"] for r in runs), 3),
            "ratios": [r["ratio"] for r in runs],
            "tunnel_median_mbps": tunnel,
            "raw_median_mbps": statistics.median(r["raw"]["mbps"] for r in runs),
            "tunnel_host_cpu_per_gbit_s": statistics.median(r["tunnel"]["host_cpu_per_gbit_s"] for r in runs),
            "raw_host_cpu_per_gbit_s": statistics.median(r["raw"]["host_cpu_per_gbit_s"] for r in runs),
            "tunnel_of_original": round(tunnel / ORIGINAL_MBPS[mtu], 3),
            "raw_failed_commands": sum(r["raw"]["errors"] for r in runs),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each iperf3 run and each raw loop")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds per MTU and direction")
    parser.add_argument("--no-offload", action="store_true", help="TUN devices without checksum/TSO offload")
    args = parser.parse_args()
    if not (1 <= args.seconds <= 120 and 1 <= args.rounds <= 50):
        raise SystemExit("--seconds must be 1..120 and --rounds 1..50")
    results_file = RESULTS.with_name("ipofc-no-offload.json") if args.no_offload else RESULTS
    lab = EmulatedLab()
    if not lab.is_running():
        raise SystemExit("the emulated lab is not running: `fabqual lab up` first")
    topology = load_topology(lab.topology_path)
    executors: dict[str, Executor] = {n.name: SshExecutor.for_node(n) for n in topology.nodes}
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    link = next(link for link in topology.links if link.type == "ipofc")
    assert isinstance(link.params, IpofcParams)
    link = replace(link, params=replace(link.params, offload=not args.no_offload))
    driver = driver_for(LinkContext(topology, link, lambda n: executors[n]))
    journal = Journal()
    result: dict[str, Any] = {"benchmark": "ipofc", "when": started}
    try:
        session = driver.up()
        tunnel = session.ip_tunnel
        assert tunnel is not None
        initiator = tunnel.initiator.executor
        sender = sender_path(initiator)
        initiator.put(Path(sg_sender.__file__), sender)
        journal.record_command(initiator, f"bench sender {sender}", f"rm -f {sender}")
        raw_sg = export_raw_lun(executors[link.end("target").node], initiator, journal, tunnel.facts)
        shape = tunnel_shape(getattr(driver, "processes", []))
        pairs = paired_rounds(lab, tunnel, raw_sg, seconds=args.seconds, rounds=args.rounds, shape=shape)
        lat = latency(tunnel, raw_sg)
        result.update(report(args, shape, pairs, lat, dict(tunnel.facts)))
        results_file.parent.mkdir(exist_ok=True)
        results_file.write_text(json.dumps(result, indent=2) + "\n")  # before teardown, which can be slow
    finally:
        try:
            journal.undo_all()
        finally:
            driver.down()
            for executor in executors.values():
                executor.close()
    print(json.dumps(result["summary"], indent=2))
    print(json.dumps(result["latency"], indent=2))


def report(
    args: argparse.Namespace,
    shape: tuple[int, int, int],
    pairs: dict[str, list[dict[str, Any]]],
    lat: dict[str, Any],
    facts: dict[str, str],
) -> dict[str, Any]:
    transfer, reads, writes = shape
    return {
        "command": " ".join(["python", "benchmarks/bench_ipofc.py", *sys.argv[1:]]),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "load_avg_1m": os.getloadavg()[0]},
        "facts": facts,
        "like_for_like": {
            "command_bytes": transfer,
            "tunnel_inflight": {"reads": reads, "writes": writes},
            "raw_inflight": "the tunnel's in-flight count of the direction carrying the data"
            f" ({writes} WRITEs to the target, {reads} READs back)",
            "seconds": args.seconds,
            "rounds": args.rounds,
            "offload": not args.no_offload,
            "raw_path": f"rd_mcp ramdisk as LUN {RAW_LUN} of the tunnel's tcm_fc TPG (same FCoE ports and SCSI host)",
        },
        "summary": summary(pairs),
        "latency": lat,
        "pairs": pairs,
        "original_mbps": ORIGINAL_MBPS,
        "note": (
            "emulated lab: QEMU TCG guests on a shared 2-core host, FCoE over a QEMU UDP socket link;"
            " host CPU is both QEMU processes' user+system seconds per wall second, divided by Gbit/s"
        ),
    }


if __name__ == "__main__":
    main()
