"""``fabqual doctor``: does every node have what its links need? One line per problem."""

from __future__ import annotations

import argparse

from fabqual.cli.args import Subcommands, topology_path


def _doctor(args: argparse.Namespace) -> int:
    from fabqual.doctor import run_doctor
    from fabqual.executors import NodeExecutors
    from fabqual.topology import load_topology

    topology = load_topology(topology_path(args.topology))
    with NodeExecutors(topology) as executor_for:
        report = run_doctor(topology, executor_for)
    for node, count in sorted(report.checked.items()):
        print(f"{node}: checked {count} requirements")
    for problem in report.problems:
        print(f"PROBLEM {problem.line()}")
    if report.ok:
        print(f"doctor: {topology.name}: every node has what its links need")
        return 0
    blocked = sorted({link for p in report.problems for link in p.links})
    print(f"doctor: {len(report.problems)} problem(s); blocked links: {', '.join(blocked)}")
    return 1


def register(sub: Subcommands) -> None:
    doctor = sub.add_parser("doctor", help="check that every node has what its links need")
    doctor.add_argument("--topology", help="topology file (default: the running emulated lab)")
    doctor.set_defaults(func=_doctor)
