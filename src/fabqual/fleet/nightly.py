"""``fabqual nightly --coordinator ADDR --tags link=fc_nvme``: the nightly run on a rack handed out by labgrid.

The place is reserved (waiting its turn by priority), acquired and leased for
the run (:mod:`fabqual.fleet.lease`); its topology is found through the
coordinator — the place's ``topology`` tag names ``<topologies>/<name>.yaml`` —
so one runner host serves any rack. The run itself is the same as on a locked
rack (:func:`fabqual.run.nightly.run_locked`); the place replaces the file
lock. SIGTERM (and Ctrl-C) end the run and still give the place back.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from fabqual.errors import FabqualError
from fabqual.fleet.coordinator import TAG_VALUE, Coordinator, CoordinatorError
from fabqual.fleet.lease import DEFAULT_LEASE_S, Held, PlaceBusyError, PlaceLease
from fabqual.report.pytest_report import PLACE_ENV, PLACE_TAGS_ENV

TOPOLOGY_TAG = "topology"
MIN_LEASE_S = 10.0


class _Terminated(Exception):
    pass


def topology_of_place(held: Held, topologies: Path) -> Path:
    """``<topologies>/<tag>.yaml`` for the place's ``topology`` tag; one line when it is missing."""
    name = held.tags.get(TOPOLOGY_TAG)
    if not name:
        raise FabqualError(
            f"place {held.place} has no {TOPOLOGY_TAG!r} tag; set it with"
            f" labgrid-client -p {held.place} set-tags {TOPOLOGY_TAG}=NAME (for {topologies}/NAME.yaml)"
        )
    if not TAG_VALUE.match(name) or name.startswith("."):
        raise FabqualError(f"place {held.place}: {TOPOLOGY_TAG}={name!r} is not a plain file name")
    for candidate in (topologies / f"{name}.yaml", topologies / f"{name}.yml"):
        if candidate.is_file():
            return candidate
    raise FabqualError(
        f"place {held.place}: topology {name!r} not found as {topologies / name}.yaml; pass --topologies DIR"
    )


def run_on_place(
    address: str,
    tags: dict[str, str],
    *,
    topologies: Path,
    prio: int,
    wait: float,
    lease_s: float = DEFAULT_LEASE_S,
    **run: Any,
) -> int:
    from fabqual.run.nightly import EXIT_LAB, EXIT_LOCKED, run_locked

    def say(line: str) -> None:
        print(f"fabqual nightly: {line}", flush=True)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated(signal.Signals(signum).name)

    if lease_s < MIN_LEASE_S:
        raise FabqualError(f"--lease {lease_s:g}: a lease shorter than {MIN_LEASE_S:.0f}s expires between refreshes")
    previous = signal.signal(signal.SIGTERM, terminate)
    coordinator = Coordinator(address, user=f"fabqual-{os.getpid()}")
    try:
        with PlaceLease(coordinator, tags, prio=prio, wait=wait, lease_s=lease_s, say=say) as held:
            topology_file = topology_of_place(held, topologies)
            os.environ[PLACE_ENV] = held.place
            os.environ[PLACE_TAGS_ENV] = json.dumps(held.tags, sort_keys=True)
            try:
                return run_locked(topology_file, **run)
            finally:
                os.environ.pop(PLACE_ENV, None)
                os.environ.pop(PLACE_TAGS_ENV, None)
    except PlaceBusyError as error:
        print(f"fabqual nightly: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except (CoordinatorError, FabqualError) as error:
        print(f"fabqual nightly: {error}", file=sys.stderr)
        return EXIT_LAB
    except _Terminated as why:
        print(f"fabqual nightly: stopped by {why}; the place was given back", file=sys.stderr)
        return EXIT_LAB
    finally:
        signal.signal(signal.SIGTERM, previous)
