"""Racks handed out by a real labgrid coordinator: waiting turns, leases, killed runners, bad input.

The coordinator is labgrid's own ``labgrid-coordinator`` (PyPI labgrid, gRPC),
started by the test on 127.0.0.1 with two places. The runners are real
``fabqual nightly --coordinator`` processes; what they run is a stand-in pytest
session (``test_standin.py`` below): a real fabqual session on a topology whose
node is this machine, recording one measurement and sleeping, so it writes
real results JSON, JUnit and report files and a row in the results database.
No rack hardware is touched and nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fabqual.fleet.coordinator import Coordinator, PlaceState, parse_places
from fabqual.fleet.lease import HOLDER_TAG, LEASE_TAG, lease_expired
from tests.self.local_topology import LOCAL_RACK

FIXTURE = Path(__file__).parents[3] / "fixtures" / "outputs" / "labgrid" / "places-v.txt"

STANDIN = """
import os, time
import pytest
from fabqual.measure import USER_PROPERTY, Measurement

@pytest.mark.capability("nvme_namespace")
def test_standin(request, link, fabqual_run):
    marks = os.environ["FQ_MARKS"]
    with open(marks, "a") as f:
        f.write(f"start {os.environ.get('FQ_NAME')} {time.time()} {os.getpid()}\\n")
    time.sleep(float(os.environ.get("FQ_SLEEP", "1")))
    m = Measurement(link=link.name, link_type=link.type, metric="iops", value=100.0, unit="IOPS",
                    threshold=10.0, comparison=">=", context={"bs": "4k"})
    request.node.user_properties.append((USER_PROPERTY, m.to_json()))
    with open(marks, "a") as f:
        f.write(f"end {os.environ.get('FQ_NAME')} {time.time()}\\n")
"""


def test_places_output_is_parsed_into_tags_holder_and_reservation() -> None:
    """Real `labgrid-client -v places` output (origin beside it): tags, holder, reservation, free place."""
    places = parse_places(FIXTURE.read_text())
    assert set(places) == {"rack-a", "rack-b"}
    assert places["rack-a"].tags == {"link": "fc_nvme", "topology": "seeds"}
    assert places["rack-a"].acquired == "vm/root" and places["rack-a"].reservation == "1TJELWXBBY"
    assert places["rack-b"].acquired is None and places["rack-b"].reservation is None


@pytest.mark.parametrize(
    ("acquired", "tags", "expired"),
    [
        ("vm/fabqual-1", {LEASE_TAG: "1000"}, True),  # lease ended at t=1000, now is 2000
        ("vm/fabqual-1", {LEASE_TAG: "1998"}, False),  # within the 5 s grace
        ("vm/alice", {}, False),  # acquired by a person: never reaped
        (None, {LEASE_TAG: "1000"}, False),  # stale tag on a free place: nothing to release
        ("vm/fabqual-1", {LEASE_TAG: "soon"}, False),  # not a time: left alone
    ],
)
def test_only_a_place_whose_fabqual_lease_ended_is_reaped(
    acquired: str | None, tags: dict[str, str], expired: bool
) -> None:
    """The reaping rule: acquired, with a fabqual lease, ended more than the grace ago."""
    place = PlaceState("rack-a", tags={"link": "fc_nvme", **tags}, acquired=acquired)
    assert lease_expired(place, now=2000.0) is expired


@dataclass(frozen=True)
class Fleet:
    address: str
    work: Path
    coordinator: Coordinator
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def runner(self, name: str, *args: str, sleep: float = 1.0, tags: str = "link=fc_nvme") -> subprocess.Popen[str]:
        """A `fabqual nightly --coordinator` process in its own session (so it can be killed whole)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FABQUAL_", "LG_"))}
        env.update(FQ_MARKS=str(self.work / "marks.txt"), FQ_NAME=name, FQ_SLEEP=str(sleep))
        command = [
            *(sys.executable, "-m", "fabqual.cli", "nightly", "--coordinator", self.address, "--tags", tags),
            *("--topologies", str(self.work / "topologies"), "--tests", str(self.work / "test_standin.py")),
            *("--reports", str(self.work / f"reports-{name}"), "--no-doctor", *args),
            *("--results-db", f"sqlite:///{self.work / 'results.db'}"),
            *("--", "-p", "no:cacheprovider", "--no-health-gate", "-m", "fc_nvme", "-q"),
        ]
        runner = subprocess.Popen(
            command,
            cwd=self.work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.started.append(runner)
        return runner


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet")
    (work / "topologies").mkdir()
    (work / "topologies" / "standin.yaml").write_text(LOCAL_RACK)
    (work / "test_standin.py").write_text(STANDIN)
    address = f"127.0.0.1:{_free_port()}"
    binary = Path(sys.executable).parent / "labgrid-coordinator"
    server = subprocess.Popen(
        [str(binary), "-l", address], cwd=work, stdout=subprocess.DEVNULL, stderr=(work / "coordinator.log").open("w")
    )
    coordinator = Coordinator(address, user="selftest")
    fleet: Fleet | None = None
    try:
        deadline = time.monotonic() + 60
        while coordinator.run("places", check=False).returncode != 0:
            assert server.poll() is None, (work / "coordinator.log").read_text()
            assert time.monotonic() < deadline, "labgrid-coordinator did not answer in 60 s"
            time.sleep(0.5)
        coordinator.create_place("rack-a", {"link": "fc_nvme", "topology": "standin"})
        coordinator.create_place("rack-b", {"link": "nvmet_rdma", "topology": "standin"})
        fleet = Fleet(address, work, coordinator)
        yield fleet
    finally:
        for runner in fleet.started if fleet is not None else []:
            if runner.poll() is None:  # a test failed half-way: its runner (and pytest child) go too
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
        server.terminate()
        server.wait(timeout=30)


def finish(runner: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, _ = runner.communicate(timeout=timeout)
    return runner.returncode, out


def wait_for(runner: subprocess.Popen[str], needle: str, timeout: float = 120) -> str:
    """Read the runner's output until ``needle`` appears; what was read so far."""
    assert runner.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        line = runner.stdout.readline()
        assert line or runner.poll() is None, f"runner ended before {needle!r}:\n{seen}"
        assert time.monotonic() < deadline, f"no {needle!r} within {timeout}s:\n{seen}"
        seen += line
    return seen


def assert_free(fleet: Fleet, name: str) -> None:
    place = fleet.coordinator.places()[name]
    assert place.acquired is None and place.reservation is None, place
    assert LEASE_TAG not in place.tags and HOLDER_TAG not in place.tags, place.tags


def marks(fleet: Fleet) -> dict[str, tuple[float, float]]:
    spans: dict[str, list[float]] = {}
    for line in (fleet.work / "marks.txt").read_text().splitlines():
        kind, name, moment = line.split()[:3]
        spans.setdefault(name, [0.0, 0.0])[0 if kind == "start" else 1] = float(moment)
    return {name: (span[0], span[1]) for name, span in spans.items()}


def test_two_runners_for_one_place_take_turns_and_give_it_back(fleet: Fleet) -> None:
    """The second runner waits (saying for whom) and runs after the first, never overlapping; one that
    will not wait exits 3 naming the holder."""
    first = fleet.runner("first", "--wait", "300", sleep=15)
    wait_for(first, "acquired with reservation")
    second = fleet.runner("second", "--wait", "300", sleep=1)
    code, out = finish(fleet.runner("impatient", "--wait", "0"))  # a third that will not wait: exit 3
    assert code == 3, out
    assert "no place with link=fc_nvme came free in 0s (rack-a held by" in out and "Traceback" not in out
    code_1, out_1 = finish(first)
    code_2, out_2 = finish(second)
    assert (code_1, code_2) == (0, 0), out_1 + out_2
    assert "place rack-a" in out_1 and "place rack-a released" in out_1
    assert "waiting up to 300s for a place with link=fc_nvme (rack-a held by" in out_2
    spans = marks(fleet)
    assert spans["first"][1] <= spans["second"][0], spans  # second started after first ended
    assert_free(fleet, "rack-a")
    assert_free(fleet, "rack-b")  # the other place was never touched
    with sqlite3.connect(fleet.work / "results.db") as db:
        assert db.execute("select name, place from racks").fetchall() == [("local-rack", "rack-a")]
        assert db.execute("select count(*) from runs").fetchone() == (2,)


def test_a_killed_runner_place_comes_free_when_its_lease_ends(fleet: Fleet) -> None:
    """SIGKILL while holding: labgrid keeps the place acquired; the next runner reaps it after the lease and runs."""
    victim = fleet.runner("victim", "--wait", "300", "--lease", "10", sleep=120)
    wait_for(victim, "acquired with reservation")
    deadline = time.monotonic() + 120
    while "start victim" not in (fleet.work / "marks.txt").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.5)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    held = fleet.coordinator.places()["rack-a"]
    assert held.acquired is not None and held.tags.get(LEASE_TAG)  # orphaned, as labgrid alone would leave it
    code, out = finish(fleet.runner("heir", "--wait", "300", sleep=1))
    assert code == 0, out
    assert "lease of" in out and "ended" in out and "releasing it" in out
    assert "start heir" in (fleet.work / "marks.txt").read_text()
    assert_free(fleet, "rack-a")


def test_sigterm_ends_the_run_and_gives_the_place_back_at_once(fleet: Fleet) -> None:
    """A runner stopped by SIGTERM releases its place itself; no lease has to run out."""
    runner = fleet.runner("stopped", "--wait", "300", sleep=60)
    wait_for(runner, "running ")
    time.sleep(2)
    runner.send_signal(signal.SIGTERM)
    code, out = finish(runner)
    assert code in (1, 2), out
    assert "place rack-a released" in out
    assert_free(fleet, "rack-a")


def test_a_place_without_topology_tag_is_one_line_and_is_released(fleet: Fleet) -> None:
    """rack-b loses its topology tag: exit 2 naming the fix; the place is not left acquired."""
    fleet.coordinator.set_tags("rack-b", {"topology": ""})
    try:
        code, out = finish(fleet.runner("untagged", tags="link=nvmet_rdma"))
    finally:
        fleet.coordinator.set_tags("rack-b", {"topology": "standin"})
    assert code == 2, out
    assert "place rack-b has no 'topology' tag; set it with labgrid-client -p rack-b set-tags topology=NAME" in out
    assert "Traceback" not in out
    assert_free(fleet, "rack-b")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tags", "Link=fc_nvme"], "tag key 'Link' must be lower-case"),
        (["--tags", "link=fc nvme"], "a tag value is letters, digits"),
        (["--tags", "link"], "a tag value is letters"),
        (["--coordinator", "nohost"], "expected HOST:PORT"),
        (["--topology", "x.yaml"], "--topology and --coordinator exclude each other"),
        (["--lease", "1"], "a lease shorter than 10s"),
        (["--results-db", "mysql://u@h/db"], "'mysql' is not supported"),
        (["--known-issues", "/nonexistent.yaml"], "known-issues file /nonexistent.yaml does not exist"),
    ],
)
def test_bad_fleet_arguments_are_one_line(fleet: Fleet, args: list[str], message: str) -> None:
    """Wrong tags, address or combination: exit 2 with one line, before the coordinator is asked anything."""
    base = ["--coordinator", fleet.address, "--tags", "link=fc_nvme"]
    command = [sys.executable, "-m", "fabqual.cli", "nightly", *base, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=fleet.work)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_coordinator_is_one_line(tmp_path: Path) -> None:
    """Nothing listens on the port: exit 2 with labgrid's own reason, no traceback."""
    command = [sys.executable, "-m", "fabqual.cli", "nightly", "--coordinator", f"127.0.0.1:{_free_port()}"]
    done = subprocess.run([*command, "--tags", "link=x"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Could not connect to coordinator" in done.stderr and "Traceback" not in done.stderr
