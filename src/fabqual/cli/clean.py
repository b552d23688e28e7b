"""``fabqual clean``: by hand, the sweep every session does at its start.

Finds on every node of the topology the run directories that killed runs left
(:mod:`fabqual.drivers.sweep`), replays their undo journals and removes them;
runs still alive are left alone. Then every vCenter of the topology: what killed
pvrdma runs marked there is restored (:mod:`fabqual.vsphere.left`; the emulated
lab's simulator lives only during its run, so there is nothing to sweep). It holds
the rack's lock while it works, so it never sweeps under a nightly run.
"""

from __future__ import annotations

import argparse

from fabqual.cli.args import Subcommands, seconds, topology_path
from fabqual.errors import FabqualError
from fabqual.topology.model import VCenter


def _clean(args: argparse.Namespace) -> int:
    from fabqual.drivers.sweep import sweep_node
    from fabqual.executors import executor_for_node
    from fabqual.run.lock import rack_lock
    from fabqual.topology import load_topology

    topology = load_topology(topology_path(args.topology))
    failed = False
    with rack_lock(topology.name, wait=args.wait):
        for node in topology.nodes:
            executor = executor_for_node(node)
            try:
                result = sweep_node(executor, dry_run=args.dry_run, force=args.force)
                print(result.line(dry_run=args.dry_run))
            except FabqualError as error:
                failed = True
                print(f"{node.name}: cannot sweep: {str(error).splitlines()[0]}")
            finally:
                executor.close()
        for vc in topology.vcenters:
            if vc.simulator:  # the emulated lab's vcsim lives only during its run: nothing to sweep
                continue
            try:
                lines = sweep_vcenter(vc, dry_run=args.dry_run, force=args.force)
            except FabqualError as error:
                failed = True
                lines = [f"cannot sweep: {str(error).splitlines()[0]}"]
            for line in lines:
                print(f"vCenter {vc.name}: {line}")
    return 1 if failed else 0


def sweep_vcenter(vc: VCenter, *, dry_run: bool = False, force: bool = False) -> list[str]:
    """Restore what killed runs marked in ``vc``'s datacenter; one line per object (or why none)."""
    from fabqual.links.pvrdma import vcenter_driver

    driver = vcenter_driver(vc)
    driver.connect()
    try:
        return driver.sweep(dry_run=dry_run, force=force) or ["nothing left by earlier runs"]
    finally:
        driver.close()


def register(sub: Subcommands) -> None:
    parser = sub.add_parser("clean", help="undo what killed runs left on the nodes and vCenters of a topology")
    parser.add_argument("--topology", help="topology file (default: the running emulated lab)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")
    parser.add_argument(
        "--force", action="store_true", help="also sweep runs started from another controller host (cannot be probed)"
    )
    parser.add_argument("--wait", type=seconds, default=0.0, help="seconds to wait for the rack's lock")
    parser.set_defaults(func=_clean)
