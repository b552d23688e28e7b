"""Live fuzz: generated CDBs sent through SG_IO to the running IPoFC target, every answer checked.

Hypothesis draws batches of CDBs (``fabqual.testing.strategies.cdbs()``: valid
ones and mutations of them); a stdlib SG_IO sender on the initiator
(``fabqual.drivers.sg_sender``) sends a whole batch per SSH round trip; each
status and sense must equal what the dispatcher (``fabqual.ipofc.dispatch``)
answers for the CDB as the target receives it. Afterwards the tunnel must still
carry ping and TCP (iperf3): a malformed command may not hurt the link.

Budget: ``ci`` profile 3 batches of 100 CDBs; ``FABQUAL_HYPOTHESIS_PROFILE=lab``
420 batches of 250, of which about 1.4 % are not sent (held READs, reservations), so
at least 100k CDBs are sent and checked.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fabqual.drivers import sg_sender
from fabqual.ipofc import dispatch, framing, scsi
from fabqual.links.tunnel_handle import IpTunnel
from fabqual.testing import strategies
from fabqual.tools.iperf3 import run_iperf3
from fabqual.tools.ping import run_ping
from fabqual.topology.model import Link

BATCH, BATCHES = {"ci": (100, 3), "lab": (250, 420)}[strategies.PROFILE]
MIN_SENT = {"ci": BATCHES * BATCH // 2, "lab": 100_000}[strategies.PROFILE]
DATA_IN_LENGTH = 4096
MAX_WRITE = 64 * 1024
REMOTE_SENDER = "/tmp/fabqual-sg-sender.py"
# Commands LIO's core answers itself before the TCMU handler sees them (target_core_device.c,
# passthrough_parse_cdb): REPORT LUNS is sent and must get a valid SAM status; reservations
# (RESERVE/RELEASE(6/10), PERSISTENT RESERVE IN/OUT) are not sent: they test LIO, not fabqual,
# and change the LUN's reservation state (the lab run saw RESERVATION CONFLICT for PR OUT).
LIO_CORE_OPCODES = frozenset({0xA0})
RESERVATION_OPCODES = frozenset({0x16, 0x17, 0x56, 0x57, 0x5E, 0x5F})


class _Probe:
    """A data path that only records whether the dispatcher reached it."""

    def __init__(self) -> None:
        self.reached = ""

    def write(self, payload: bytes) -> None:
        self.reached = "write"

    def read(self, cmd_id: int, capacity: int) -> bytes | None:
        self.reached = "read"
        return None


@dataclass(frozen=True)
class Case:
    """One CDB as sent, as the target sees it, and the answer the codec prescribes."""

    sent: bytes
    seen: bytes
    direction: str
    length: int
    data_out: bytes
    expected: dispatch.Response | None  # None: LIO's core answers; only a valid SCSI status is required


def target_view(sent: bytes) -> bytes:
    """The CDB the handler receives: FCP carries 16 zero-padded bytes, LIO cuts them to the opcode group's length."""
    padded = sent.ljust(16, b"\0")[:16]
    return padded[: scsi.group_length(padded[0]) or 16]


def make_case(cdb: bytes) -> Case | None:
    """The request to send for ``cdb``, or None when it is not sent (a held READ, a reservation)."""
    sent = cdb.ljust(6, b"\0")[:16]  # SG_IO takes 6..16 bytes over FC
    seen = target_view(sent)
    if seen[0] in RESERVATION_OPCODES:
        return None
    if seen[0] in LIO_CORE_OPCODES:
        return Case(sent, seen, "r", DATA_IN_LENGTH, b"", None)
    probe = _Probe()
    answer = dispatch.Dispatcher(dispatch.LunConfig(), probe).handle(seen)
    if probe.reached == "read":
        return None  # a valid READ is held up to the hold time and would take tunnel packets
    if probe.reached == "write":
        size = scsi.decode_cdb(seen)["transfer_length"] * dispatch.LunConfig().block_size
        if size > MAX_WRITE:
            return None
        empty = framing.encode_frame(framing.Frame(seq=0))  # a valid frame that carries nothing
        return Case(sent, seen, "w", size, empty, dispatch.Response.good())
    direction = "w" if seen[0] in scsi.WRITE_OPCODES else "r"
    return Case(sent, seen, direction, DATA_IN_LENGTH if direction == "r" else 512, b"", answer)


def mismatch(case: Case, got: dict[str, object]) -> str | None:
    """Why ``got`` is not the prescribed answer, or None."""
    if "error" in got:
        return f"SG_IO failed: {got['error']}"
    status = got["status"]
    if case.expected is None:
        ok = status in set(scsi.Status)
        return None if ok else f"LIO core answered status 0x{status:02x}"
    if got["host_status"]:
        return f"transport error host_status 0x{got['host_status']:02x}"
    if status != case.expected.status:
        return f"status 0x{status:02x}, codec says 0x{case.expected.status:02x} (sense {got['sense']})"
    if status == scsi.Status.CHECK_CONDITION:
        sense = bytes.fromhex(str(got["sense"]))[: scsi.FIXED_SENSE_LENGTH]
        if sense != case.expected.sense:
            return f"sense {sense.hex()}, codec says {case.expected.sense.hex()}"
    elif case.direction == "r":
        data = bytes.fromhex(str(got["data"]))
        want = case.expected.data_in
        if data[: len(want)] != want:
            return f"data-in {data[: len(want)].hex()}, codec says {want.hex()}"
    return None


@pytest.fixture
def send_batch(ip_tunnel: IpTunnel) -> Iterator[Callable[[list[Case]], list[dict[str, object]]]]:
    """Send a batch of cases through one sender process on the initiator."""
    initiator = ip_tunnel.initiator.executor
    initiator.put(Path(sg_sender.__file__), REMOTE_SENDER)
    device = shlex.quote(ip_tunnel.facts["sg_device"])

    def send(cases: list[Case]) -> list[dict[str, object]]:
        lines = "".join(f"{c.sent.hex()} {c.direction} {c.length} {c.data_out.hex() or ''}\n" for c in cases)
        result = initiator.run(f"python3 {REMOTE_SENDER} {device}", stdin=lines, timeout=60 + len(cases))
        answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert len(answers) == len(cases), f"the sender answered {len(answers)} of {len(cases)} CDBs"
        return answers

    yield send
    initiator.run(f"rm -f {REMOTE_SENDER}", timeout=30)


@pytest.mark.capability("ip_tunnel")
def test_fuzzed_cdbs_get_the_codecs_answers(  # type: ignore[no-untyped-def]
    link: Link, ip_tunnel: IpTunnel, send_batch, check_metric, request: pytest.FixtureRequest
) -> None:
    """Every generated CDB gets the status/sense/data the codec prescribes; then ping still crosses."""
    counts = {"sent": 0, "skipped": 0, "batches": 0}

    @settings(
        max_examples=BATCHES,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),  # no shrinking: every mismatch of a batch is reported at once
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(strategies.cdbs(), min_size=BATCH, max_size=BATCH))
    def fuzz(cdbs: list[bytes]) -> None:
        cases = [c for c in map(make_case, cdbs) if c is not None]
        counts["skipped"] += len(cdbs) - len(cases)
        answers = send_batch(cases)
        counts["sent"] += len(cases)
        counts["batches"] += 1
        if counts["batches"] % 20 == 0:  # progress for long lab runs (visible with -s)
            print(f"live fuzz: {counts['sent']} CDBs sent and checked, {counts['skipped']} not sent", flush=True)
        problems = [
            f"{c.sent.hex()} (target sees {c.seen.hex()}): {why}"
            for c, a in zip(cases, answers, strict=True)
            if (why := mismatch(c, a))
        ]
        assert not problems, f"{len(problems)} of {len(cases)} CDBs answered wrongly:\n  " + "\n  ".join(problems[:20])

    fuzz()
    for name, value in counts.items():
        request.node.user_properties.append((f"fuzz_{name}", value))  # shown in the report's row
    print(f"live fuzz done: {counts}", flush=True)
    assert counts["sent"] >= MIN_SENT, f"only {counts['sent']} CDBs could be sent, need {MIN_SENT} ({counts})"
    result = run_ping(ip_tunnel.initiator.executor, ip_tunnel.target.address, 10, 0.2)
    check_metric(link, "loss_pct", result.loss_pct, context={"after": "fuzz"})
    # TCP too: once, empty-frame WRITEs before traffic were followed by a 70 s iperf3 stall.
    tcp = run_iperf3(
        ip_tunnel.target.executor, ip_tunnel.initiator.executor, address=ip_tunnel.target.address, seconds=5
    )
    check_metric(link, "tcp_mbps", tcp.mbps, context={"mtu": str(ip_tunnel.mtu), "after": "fuzz"})
