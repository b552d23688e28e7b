"""A rack handed out by labgrid's coordinator: reserve (waiting its turn), acquire, keep alive, release.

labgrid keeps an acquired place acquired until someone releases it, and a
reservation whose place is acquired never expires: a runner killed with
SIGKILL would hold its rack forever. So a fabqual runner also holds a *lease*
on the place, two tags it refreshes while it runs (``fabqual_lease`` = the Unix
time the lease ends, ``fabqual_holder`` = host-pid). A runner that waits for a
place *reaps* places whose lease ended more than ``grace`` seconds ago: it
releases them (``release --kick``), cancels the dead runner's reservation and
removes the lease tags, so the coordinator allocates the place to the next
reservation. A place acquired without a fabqual lease (a person at the
``labgrid-client`` prompt) is never reaped. Leases compare wall clocks: keep the
runner hosts on NTP.

On the way out — normal end, failure, exception, SIGTERM/SIGINT turned into an
exception by the caller — the lease tags are removed, the place released and
the reservation cancelled, each step tried even when an earlier one failed.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fabqual.errors import FabqualError
from fabqual.fleet.coordinator import Coordinator, CoordinatorError, PlaceState

LEASE_TAG, HOLDER_TAG = "fabqual_lease", "fabqual_holder"
DEFAULT_LEASE_S = 600.0
GRACE_S = 5.0
POLL_S = 5.0

log = logging.getLogger(__name__)


class PlaceBusyError(FabqualError):
    """No matching place came free within the wait; the message names who holds the candidates."""


@dataclass(frozen=True)
class Held:
    """The place a runner holds."""

    place: str
    token: str
    tags: dict[str, str]


def lease_expired(place: PlaceState, now: float, grace: float = GRACE_S) -> bool:
    """An acquired place whose fabqual lease ended ``grace`` seconds ago (never one without a lease)."""
    if place.acquired is None or LEASE_TAG not in place.tags:
        return False
    try:
        return float(place.tags[LEASE_TAG]) + grace < now
    except ValueError:
        return False


def reap(coordinator: Coordinator, say: Callable[[str], None], *, grace: float = GRACE_S) -> list[str]:
    """Free every place whose runner died (lease ended); the names of the places freed."""
    freed = []
    for place in coordinator.places().values():
        if not lease_expired(place, time.time(), grace):
            continue
        say(
            f"place {place.name}: lease of {place.tags.get(HOLDER_TAG, '?')} ({place.acquired}) ended"
            f" {time.time() - float(place.tags[LEASE_TAG]):.0f}s ago; releasing it"
        )
        _free(coordinator, place.name, place.reservation, kick=True)
        freed.append(place.name)
    return freed


def _free(coordinator: Coordinator, place: str, token: str | None, *, kick: bool) -> None:
    steps: list[tuple[str, ...]] = [
        ("set-tags", f"{LEASE_TAG}=", f"{HOLDER_TAG}="),
        ("release", "--kick") if kick else ("release",),
    ]
    for step in steps:
        done = coordinator.run(*step, place=place, check=False)
        if done.returncode != 0:
            log.warning("place %s: %s: %s", place, " ".join(step), (done.stderr or done.stdout).strip()[-300:])
    if token:
        coordinator.run("cancel-reservation", token, check=False)


class PlaceLease:
    """``with PlaceLease(coordinator, {"link": "fc_nvme"}) as held:`` — a rack for the ``with`` body."""

    def __init__(
        self,
        coordinator: Coordinator,
        tags: dict[str, str],
        *,
        prio: int = 0,
        wait: float = 0.0,
        lease_s: float = DEFAULT_LEASE_S,
        say: Callable[[str], None] = print,
    ) -> None:
        self.coordinator = coordinator
        self.tags = tags
        self.prio = prio
        self.wait = wait
        self.lease_s = lease_s
        self.say = say
        self.holder = f"{socket.gethostname()}-{os.getpid()}".lower()
        self.held: Held | None = None
        self._token: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> Held:
        try:
            self.held = self._take()
        except BaseException:
            self._give_back()
            raise
        self._beat = threading.Thread(target=self._heartbeat, name="fabqual-lease", daemon=True)
        self._beat.start()
        return self.held

    def __exit__(self, *exc: object) -> None:
        self._give_back()

    def _take(self) -> Held:
        reap(self.coordinator, self.say)
        wanted = " ".join(f"{k}={v}" for k, v in self.tags.items())
        out = self.coordinator.run(
            "reserve", "--shell", "--prio", str(self.prio), *(f"{k}={v}" for k, v in self.tags.items())
        )
        token = out.stdout.strip().rpartition("LG_TOKEN=")[2].strip()
        if not token:
            raise CoordinatorError(f"labgrid coordinator {self.coordinator.address}: reserve printed no token")
        self._token = token
        if not self._wait_allocated(token, wanted):
            raise PlaceBusyError(
                f"no place with {wanted} came free in {self.wait:.0f}s ({self._holders(wanted)});"
                " retry later or pass --wait SECONDS"
            )
        place = next((p for p in self.coordinator.places().values() if p.reservation == token), None)
        if place is None:
            raise CoordinatorError(f"reservation {token} was allocated but no place carries it")
        self.coordinator.run("acquire", place=f"+{token}")
        self._refresh(place.name)
        self.say(
            f"place {place.name} ({_tags(place.tags)}) acquired with reservation {token}; lease {self.lease_s:.0f}s"
        )
        return Held(place.name, token, dict(place.tags))

    def _wait_allocated(self, token: str, wanted: str) -> bool:
        """Let ``labgrid-client wait`` poll (it keeps the reservation alive); reap between polls."""
        deadline = time.monotonic() + self.wait
        announced = False
        while True:
            waiter = subprocess.Popen(
                [self.coordinator.client or _client(), "-x", self.coordinator.address, "wait", token],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                # a whole POLL_S per call, even with --wait 0: the client takes a second or two to start
                _, err = waiter.communicate(timeout=POLL_S)
                if waiter.returncode != 0:
                    raise CoordinatorError(
                        f"labgrid coordinator {self.coordinator.address}: wait {token}: {err.strip()}"
                    )
                return True
            except subprocess.TimeoutExpired:
                waiter.kill()
                waiter.communicate()
            if time.monotonic() >= deadline:
                return False
            if not announced:
                self.say(f"waiting up to {self.wait:.0f}s for a place with {wanted} ({self._holders(wanted)})")
                announced = True
            reap(self.coordinator, self.say)

    def _holders(self, wanted: str) -> str:
        try:
            places = self.coordinator.places().values()
        except CoordinatorError:
            return "holders unknown"
        matching = [p for p in places if all(p.tags.get(k) == v for k, v in self.tags.items())]
        if not matching:
            return f"no place has the tags {wanted}"
        return ", ".join(
            f"{p.name} held by {p.acquired or 'a reservation'}"
            + (f" ({p.tags[HOLDER_TAG]})" if HOLDER_TAG in p.tags else "")
            for p in matching
        )

    def _refresh(self, place: str) -> None:
        until = int(time.time() + self.lease_s)
        self.coordinator.set_tags(place, {LEASE_TAG: str(until), HOLDER_TAG: self.holder})

    def _heartbeat(self) -> None:
        assert self.held is not None
        interval = max(1.0, self.lease_s / 4)
        while not self._stop.wait(interval):
            try:
                self._refresh(self.held.place)
            except FabqualError as error:  # the coordinator may come back before the lease ends
                log.warning("lease of place %s not refreshed: %s", self.held.place, error)

    def _give_back(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=70)
        try:
            if self.held is not None:
                _free(self.coordinator, self.held.place, self._token, kick=False)
                self.say(f"place {self.held.place} released")
            elif self._token is not None:
                self.coordinator.run("cancel-reservation", self._token, check=False)
        except FabqualError as error:  # the coordinator went away: the lease ends on its own
            self.say(f"place not given back ({error}); its lease ends in at most {self.lease_s:.0f}s")
        finally:
            self.held, self._token = None, None


def _tags(tags: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items()) if k not in (LEASE_TAG, HOLDER_TAG))


def _client() -> str:
    from fabqual.fleet.coordinator import client_binary

    return client_binary()
