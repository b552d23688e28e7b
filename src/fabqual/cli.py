"""The ``fabqual`` command: doctor, clean, the emulated lab, and run comparison."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from fabqual.errors import FabqualError
from fabqual.redaction import install_log_redaction

# Subcommands living in their own modules register themselves here; each module
# has ``register(subparsers)`` and sets ``func`` on its parsers.
SUBCOMMAND_MODULES = (
    "fabqual.lab.cli",
    "fabqual.report.cli",
    "fabqual.results_db.cli",
    "fabqual.fleet.cli",
    "fabqual.clean",
)


def topology_path(given: str | None) -> Path:
    """The ``--topology`` file, or without one the running emulated lab's."""
    if given:
        return Path(given)
    from fabqual.lab import EmulatedLab

    lab = EmulatedLab()
    if not lab.is_running():
        raise FabqualError("no --topology given and the emulated lab is not running: start it with `fabqual lab up`")
    return Path(lab.ensure_up())


def _doctor(args: argparse.Namespace) -> int:
    from fabqual.topology import load_topology

    topology = load_topology(topology_path(args.topology))

    from fabqual.doctor import run_doctor
    from fabqual.executors import executor_for_node

    executors: dict[str, object] = {}

    def executor_for(name: str):  # type: ignore[no-untyped-def]
        if name not in executors:
            executors[name] = executor_for_node(topology.node(name))
        return executors[name]

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fabqual", description="storage and RDMA fabric qualification")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="check that every node has what its links need")
    doctor.add_argument("--topology", help="topology file (default: the running emulated lab)")
    doctor.set_defaults(func=_doctor)
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    install_log_redaction()
    try:
        return int(args.func(args) or 0)
    except FabqualError as error:
        print(f"fabqual: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fabqual: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
