"""The live IPoFC fuzz's requests, their judgement and the target's counters, shared by the
qualification test (``tests/acceptance/test_ipofc_fuzz.py``) and its short self-test on the lab.

A batch mixes three kinds of request, sent in one ``sg_sender.py`` process on the
initiator (one SSH round trip per batch):

* ``cdb`` — a fuzzed CDB; a WRITE's data-out is bytes that are no tunnel frame
  ("JUNK"), so whichever way the target reads the CDB the answer is a refusal
  and no sequence number moves;
* ``frame`` — a WRITE(16) carrying a fuzzed tunnel frame (``data_out_frames()``),
  padded to whole blocks or to the largest transfer the initiator allows;
* ``read`` — a READ(16) of the largest transfer, held by the target until it has
  packets (then it takes them from the real tunnel) or its hold time passes.

Answers are judged by :mod:`fabqual.testing.scsi_oracle` only. Every distinct
sense buffer is decoded once more by sg3_utils' ``sg_decode_sense`` on the
initiator (:func:`sg3_disagreements`).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from fabqual.drivers import sg_sender
from fabqual.drivers.rundir import private_dir
from fabqual.errors import FabqualError
from fabqual.executors.base import Executor
from fabqual.ipofc import dispatch, scsi
from fabqual.testing import scsi_oracle as oracle

BLOCK = 512
DRIVER_SENSE = 0x08  # the sg driver's flag that sense data came back
DATA_IN_LENGTH = 4096  # buffer for fuzzed CDBs' data-in
JUNK = b"JUNK" + bytes(12)  # never a tunnel frame: a WRITE that reaches the decoder is refused
# Reservations change the LUN's state and test LIO, not fabqual; they are not sent.
RESERVATION_OPCODES = frozenset({0x16, 0x17, 0x56, 0x57, 0x5E, 0x5F})
WRITE_OPCODES = frozenset({0x0A, 0x2A, 0x8A, 0xAA})  # WRITE(6/10/16/12)


@dataclass(frozen=True)
class Request:
    """One command to send and how to judge its answer."""

    what: str  # "cdb", "frame:<kind>" or "read"
    cdb: bytes
    direction: str  # n, r, w
    length: int
    data_out: bytes = b""

    @property
    def line(self) -> str:
        """The sender's request line (data-out shorter than ``length`` is zero-padded there)."""
        return f"{self.cdb.hex()} {self.direction} {self.length} {self.data_out.hex()}".rstrip() + "\n"


class _Probe:
    """A data path that only records whether the dispatcher would hand it a READ."""

    def __init__(self) -> None:
        self.reached_read = False

    def write(self, payload: bytes) -> None:
        pass

    def read(self, cmd_id: int, capacity: int) -> bytes | None:
        self.reached_read = True
        return None


def target_view(sent: bytes) -> bytes:
    """The CDB the handler receives: FCP carries 16 zero-padded bytes, LIO cuts them to the opcode group's length."""
    padded = sent.ljust(16, b"\0")[:16]
    return padded[: scsi.group_length(padded[0]) or 16]


def cdb_request(cdb: bytes) -> Request | None:
    """A fuzzed CDB as sent over FC (6..16 bytes), or None for one not sent (reservations, valid READs).

    A valid READ is held up to the hold time and takes packets of the real tunnel; the
    ``read`` requests cover READs on purpose. Which READs are valid the dispatcher tells
    (it only sorts here; it never judges an answer).
    """
    sent = cdb.ljust(6, b"\0")[:16]
    if sent[0] in RESERVATION_OPCODES:
        return None
    probe = _Probe()
    dispatch.Dispatcher(dispatch.LunConfig(), probe).handle(target_view(sent))
    if probe.reached_read:
        return None
    if sent[0] in WRITE_OPCODES:
        return Request("cdb", sent, "w", BLOCK, JUNK)
    return Request("cdb", sent, "r", DATA_IN_LENGTH)


def frame_request(kind: str, frame: bytes, transfer: int) -> Request:
    """A WRITE(16) of ``transfer`` bytes (whole blocks, at least the frame) carrying ``frame``."""
    length = max(transfer, -(-max(len(frame), 1) // BLOCK) * BLOCK)
    cdb = scsi.encode_cdb(scsi.Opcode.WRITE_16, lba=0, transfer_length=length // BLOCK)
    return Request(f"frame:{kind}", cdb, "w", length, frame)


def read_request(transfer: int) -> Request:
    """A READ(16) of ``transfer`` bytes: the target holds it until packets or its hold time."""
    return Request(
        "read", scsi.encode_cdb(scsi.Opcode.READ_16, lba=0, transfer_length=transfer // BLOCK), "r", transfer
    )


def answer_of(got: dict[str, object]) -> oracle.Answer:
    return oracle.Answer(int(str(got["status"])), bytes.fromhex(str(got["sense"])), bytes.fromhex(str(got["data"])))


def judge(request: Request, got: dict[str, object]) -> list[str]:
    """What is wrong with ``got`` (a sender answer) for ``request``, by the oracle's rules."""
    if "error" in got:
        return [f"SG_IO failed: {got['error']}"]
    if got["host_status"] or got["driver_status"] not in (0, DRIVER_SENSE):
        return [f"transport error host 0x{got['host_status']:x} driver 0x{got['driver_status']:x}"]
    answer = answer_of(got)
    if request.what == "cdb":
        if request.cdb[0] in WRITE_OPCODES:  # refused either for the CDB or for the JUNK data-out
            if answer.status == oracle.GOOD and answer.data:
                return ["a WRITE answered with data-in"]
            return (
                []
                if answer.status == oracle.GOOD
                else oracle.sense_problems(answer.sense, cdb_length=len(request.cdb), data_out_length=len(JUNK))
            )
        return oracle.cdb_problems(request.cdb, answer, buffer=request.length)
    if request.what == "read":
        return read_problems(answer, request.length)
    kind = request.what.split(":", 1)[1]
    return oracle.frame_problems(kind, answer, cdb_length=len(request.cdb), data_out_length=request.length)


def read_problems(answer: oracle.Answer, transfer: int) -> list[str]:
    """A READ of the tunnel: GOOD with a frame (magic "IPFC", version 1, total within what came back)."""
    if answer.status != oracle.GOOD:
        return [f"tunnel READ answered 0x{answer.status:02x} {answer.sense.hex()}"]
    data = answer.data
    if len(data) < 16 or data[:4] != b"IPFC" or data[4] != 1:
        return [f"tunnel READ data-in is no frame: {data[:16].hex()}"]
    total = int.from_bytes(data[12:16], "big")
    if not 16 <= total <= min(len(data), transfer):
        return [f"tunnel READ frame claims {total} bytes, {len(data)} came back"]
    return []


class Sender:
    """``sg_sender.py`` uploaded to the initiator, run once per batch."""

    def __init__(self, initiator: Executor, device: str, max_transfer: int) -> None:
        self.initiator = initiator
        self.device = device
        self.max_transfer = max_transfer
        self.remote = f"{private_dir(initiator)}/sg_sender.py"  # the run's private directory on the node
        initiator.put(Path(sg_sender.__file__), self.remote)

    def send(self, requests: list[Request]) -> list[dict[str, object]]:
        result = self.initiator.run(
            f"python3 {shlex.quote(self.remote)} {shlex.quote(self.device)} --length {self.max_transfer}",
            stdin="".join(r.line for r in requests),
            timeout=120 + 2 * len(requests),
        )
        answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        if len(answers) != len(requests):
            raise FabqualError(f"the SG_IO sender answered {len(answers)} of {len(requests)} requests")
        return answers

    def close(self) -> None:
        self.initiator.run(f"rm -f {shlex.quote(self.remote)}", timeout=30, check=False)


def sg3_disagreements(initiator: Executor, senses: set[bytes]) -> list[str]:
    """Every distinct sense buffer decoded by ``sg_decode_sense`` on the initiator, compared with the oracle."""
    if not senses:
        return []
    ordered = sorted(senses)
    script = "".join(f"echo '=== {s.hex()}'; sg_decode_sense {' '.join(f'{b:02x}' for b in s)} 2>&1\n" for s in ordered)
    text = initiator.run("sh -s", stdin=script, timeout=60 + len(ordered)).stdout
    readings = dict(re.findall(r"^=== ([0-9a-f]+)\n(.*?)(?=^=== |\Z)", text, re.M | re.S))
    problems = []
    for sense in ordered:
        reading = readings.get(sense.hex())
        if reading is None:
            problems.append(f"{sense.hex()}: sg_decode_sense printed nothing")
            continue
        problems += [f"{sense.hex()}: {p}" for p in oracle.sg3_agrees(sense, reading)]
    return problems


def target_counters(executor: Executor, pid: int, log: str, timeout: float = 30.0) -> dict[str, object]:
    """The target daemon's counters: SIGUSR1, then the newest ``counters {json}`` line of ``log``."""
    q = shlex.quote(log)
    before = int(executor.run(f"grep -c ' counters ' {q}", timeout=30, check=False).stdout.strip() or 0)
    executor.run(f"kill -USR1 {pid}", timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in executor.run(f"cat {q}", timeout=30).stdout.splitlines() if " counters " in line]
        if len(lines) > before:
            found: dict[str, object] = json.loads(lines[-1].split(" counters ", 1)[1])
            return found
        time.sleep(0.5)
    raise FabqualError(f"{executor.node}: target daemon {pid} logged no counters to {log} within {timeout:.0f} s")


def rejected_total(counters: dict[str, object]) -> int:
    rejected = counters.get("rejected_frames", {})
    return sum(rejected.values()) if isinstance(rejected, dict) else 0


@dataclass
class Tally:
    """What a fuzz run sent and saw, for the checks after it."""

    sent: dict[str, int]
    senses: set[bytes]
    parameter_list_refusals: int = 0  # answers the target can only give after decoding a WRITE's data-out
    problems: list[str] | None = None

    @classmethod
    def empty(cls) -> Tally:
        return cls({}, set(), 0, [])


def requests_for(
    cdbs: list[bytes], frames: list[tuple[str, bytes]], *, reads: int, max_transfer: int, big: list[bool]
) -> list[Request]:
    """One batch: the CDBs, the frames (``big[i]``: padded to ``max_transfer``) and ``reads`` READs, interleaved."""
    requests = [r for r in map(cdb_request, cdbs) if r is not None]
    framed = [frame_request(kind, raw, max_transfer if big[i] else 0) for i, (kind, raw) in enumerate(frames)]
    out: list[Request] = []
    for i in range(max(len(requests), len(framed))):
        out += requests[i : i + 1] + framed[i : i + 1]
    for k in range(reads, 0, -1):  # spread evenly, inserted from the back so positions hold
        out.insert(len(out) * k // (reads + 1), read_request(max_transfer))
    return out


def run_batch(sender: Sender, requests: list[Request], tally: Tally) -> list[str]:
    """Send one batch, judge every answer; returns this batch's problems (also added to ``tally``)."""
    answers = sender.send(requests)
    problems = []
    for request, got in zip(requests, answers, strict=True):
        tally.sent[request.what] = tally.sent.get(request.what, 0) + 1
        problems += [f"{request.what} {request.cdb.hex()} ({request.length} bytes): {p}" for p in judge(request, got)]
        sense = bytes.fromhex(str(got.get("sense", "")))
        if sense:
            tally.senses.add(sense[: 8 + sense[7]] if len(sense) >= 8 else sense)
            if len(sense) >= 14 and (sense[2] & 0x0F, sense[12], sense[13]) in {
                (oracle.ILLEGAL_REQUEST, *pair) for pair in oracle.DATA_OUT_ASCS
            }:
                tally.parameter_list_refusals += 1
    assert tally.problems is not None
    tally.problems += problems
    return problems
