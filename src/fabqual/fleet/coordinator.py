"""labgrid's coordinator, spoken to through ``labgrid-client`` (its documented interface).

Every call is an argument list (never a shell string); tags and place names are
checked against labgrid's own rules before they reach the command line. The
one parse this needs, ``labgrid-client -v places``, is a pure function tested
on captured output (``fixtures/outputs/labgrid/``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fabqual.errors import FabqualError

TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")  # labgrid.remote.common.TAG_KEY, anchored
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]+$")  # what fabqual writes and accepts: no spaces, no '=' or ','
PLACE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
ADDRESS = re.compile(r"^[A-Za-z0-9_.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
CALL_TIMEOUT_S = 60.0


class CoordinatorError(FabqualError):
    """The coordinator is unreachable or refused a request; the message has labgrid's own line."""


@dataclass(frozen=True)
class PlaceState:
    """One place as ``labgrid-client -v places`` shows it."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    acquired: str | None = None  # "host/user" of the holder
    reservation: str | None = None  # token of the reservation the place is allocated to
    comment: str = ""


def parse_places(text: str) -> dict[str, PlaceState]:
    """``Place 'x':`` blocks with indented ``key: value`` lines → name → :class:`PlaceState`."""
    places: dict[str, PlaceState] = {}
    current: dict[str, str] | None = None
    name = ""

    def close() -> None:
        if current is not None:
            tags = {}
            for pair in filter(None, (p.strip() for p in current.get("tags", "").split(","))):
                key, _, value = pair.partition("=")
                tags[key] = value
            acquired = current.get("acquired") or None
            places[name] = PlaceState(
                name=name,
                tags=tags,
                acquired=None if acquired in (None, "None") else acquired,
                reservation=current.get("reservation") or None,
                comment=current.get("comment", ""),
            )

    for line in text.splitlines():
        match = re.match(r"^Place '(.+)':\s*$", line)
        if match:
            close()
            name, current = match.group(1), {}
            continue
        field_match = re.match(r"^  ([a-z ]+):\s?(.*)$", line)
        if current is not None and field_match:
            current.setdefault(field_match.group(1), field_match.group(2).strip())
    close()
    return places


def check_tags(pairs: list[str] | dict[str, str], what: str = "--tags") -> dict[str, str]:
    """``["link=fc_nvme", "release=12"]`` → dict; one line naming the bad pair otherwise."""
    items = pairs.items() if isinstance(pairs, dict) else [p.partition("=")[::2] for p in pairs]
    tags: dict[str, str] = {}
    for key, value in items:
        if not TAG_KEY.match(key):
            raise FabqualError(f"{what}: tag key {key!r} must be lower-case letters, digits or _ (like link=fc_nvme)")
        if not TAG_VALUE.match(value):
            raise FabqualError(f"{what}: {key}={value!r}: a tag value is letters, digits and _ . : + - only")
        tags[key] = value
    if not tags:
        raise FabqualError(f"{what}: give at least one KEY=VALUE tag, like link=fc_nvme")
    return tags


def check_address(address: str) -> str:
    if not ADDRESS.match(address):
        raise FabqualError(f"--coordinator {address!r}: expected HOST:PORT, like 127.0.0.1:20408")
    return address


def client_binary() -> str:
    """``labgrid-client`` of this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / "labgrid-client"
    found = str(beside) if beside.exists() else shutil.which("labgrid-client")
    if not found:
        raise FabqualError("labgrid-client is not installed; run scripts/setup.sh (pip install labgrid)")
    return found


@dataclass(frozen=True)
class Coordinator:
    """The coordinator at ``address``; calls run as the user ``user`` (labgrid's ``LG_USERNAME``)."""

    address: str
    user: str = ""
    client: str = ""

    def run(self, *args: str, place: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [self.client or client_binary(), "-x", check_address(self.address)]
        if place is not None:
            command += ["-p", place]
        command += list(args)
        env = {**os.environ, "LG_COORDINATOR": self.address}
        env.pop("LG_PLACE", None)
        env.pop("LG_TOKEN", None)
        if self.user:
            env["LG_USERNAME"] = self.user
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CoordinatorError(
                f"labgrid coordinator {self.address}: {' '.join(args)} gave no answer in {CALL_TIMEOUT_S:.0f}s"
            ) from None
        if check and done.returncode != 0:
            raise CoordinatorError(f"labgrid coordinator {self.address}: {' '.join(args)}: {_last_line(done)}")
        return done

    def places(self) -> dict[str, PlaceState]:
        return parse_places(self.run("-v", "places").stdout)

    def set_tags(self, place: str, tags: dict[str, str]) -> None:
        """Set (or with an empty value, delete) tags of ``place``; other tags stay."""
        self.run("set-tags", *(f"{k}={v}" for k, v in tags.items()), place=place)

    def create_place(self, place: str, tags: dict[str, str]) -> None:
        if not PLACE_NAME.match(place):
            raise FabqualError(f"place name {place!r}: letters, digits, _ . - only")
        self.run("create", place=place)
        self.set_tags(place, check_tags(tags, f"place {place} tags"))


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    meaningful = [line for line in lines if "Error" in line or "error" in line] or lines
    return meaningful[-1].strip() if meaningful else f"exit status {done.returncode}"
