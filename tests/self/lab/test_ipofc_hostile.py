"""A hostile peer and a live fuzz against the IPoFC target: bounded memory, counted drops, an oracle.

On ``tgt`` of the emulated lab both daemons run with offload over tcm_loop (the
fixture of ``test_ipofc_live.py``). A second sender on the same LUN — the test
peer, a Python script using the runtime's own SG_IO module — announces a sequence
and then writes maximum-size frames (the largest transfer the SCSI host allows, up
to the LUN's 4 MiB, probed) ahead of a gap it never fills, in shuffled order: before the
byte budget a target held up to 256 of them; here its budget is 4 MiB. The target daemon's peak RSS (reset
through ``/proc/PID/clear_refs`` first) must stay within its reorder budget plus a
few commands' buffers, its counters (SIGUSR1) must account for every frame sent,
the junk packets released after the reorder timeout must be stopped by the
virtio-net check, the real initiator's traffic must cross again, and the kernel
must not complain.

The short live fuzz (``live_fuzz``, judged by ``scsi_oracle``, never by the
dispatcher) reaches the frame decoder with fuzzed WRITE frames and sends READs of
the largest transfer while pings cross; the long one is the qualification test
``tests/acceptance/test_ipofc_fuzz.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fabqual.health import bad_kernel_lines, kernel_lines_since, mark_kernel_log
from fabqual.testing import live_fuzz, strategies
from fabqual.tools.ping import parse_ping
from fabqual.topology import Topology

from .test_ipofc_live import TEST_NET, OneGuestTunnel, one_guest_tunnel

FRAMES = 40
# The short live fuzz of CI; FABQUAL_HYPOTHESIS_PROFILE=lab runs the long one in tests/acceptance.
# Small packets: a long list of big frames overruns Hypothesis's choice budget (only the minimal batch).
FUZZ_BATCHES, FUZZ_BATCH, FUZZ_READS = 3, 25, 2
# The target's budget here: 4 MiB, so that the emulated lab's slow WRITEs overflow it within the
# reorder timeout (5 s here); the default (16 MiB) is the same code with a bigger number.
BUDGET = 4 << 20
# Peak RSS may exceed the resting RSS by the budget plus the buffers of the command in hand (the
# gathered data-out, the decoded packets: one transfer each, also for a frame then dropped) and the
# allocator's slack: glibc keeps freed 64 KiB packets (below its mmap threshold) in the heap, so the
# high-water mark sits above what is live. Measured on the lab with a 4 MiB budget, 1 MiB transfers
# and 40 MiB sent: 9.4 and 10.5 MiB over rest; a CI run on a loaded host (768 KiB transfers) 10.5 MiB.
# Without the byte budget all 40 MiB could be held.
TRANSIENT_TRANSFERS = 12

PEER = r"""
import json, random, sys
from fabqual.errors import DriverError
from fabqual.ipofc import framing, scsi, sg_io

sg, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = sg_io.open_sg(sg)


def write(frame, size=0):
    padded = frame + bytes(max(size, -(-len(frame) // 512) * 512) - len(frame))
    cdb = scsi.encode_cdb(scsi.Opcode.WRITE_16, lba=0, transfer_length=len(padded) // 512)
    return sg_io.execute(fd, cdb, data_out=padded, timeout_ms=60_000).status


# The largest transfer this initiator's SCSI host takes (EINVAL above it), probed with the announcement
# itself (an empty frame: the target expects `first` next), from the LUN's 4 MiB down.
announcement = framing.encode_frame(framing.Frame(first))
size = 4 << 20
while True:
    try:
        statuses = [write(announcement, size)]
        break
    except DriverError:
        if size <= 64 << 10:
            raise
        size //= 2
junk = bytes(range(256)) * 256 + bytes(16)  # a 65552-byte record: not a valid virtio-net header + IP packet
per_frame = (size - framing.HEADER_SIZE) // framing.record_size(len(junk))
order = list(range(1, count + 1))  # `first` itself never comes: a gap that is never filled
random.shuffle(order)
for offset in order:
    frame = framing.Frame((first + offset) % framing.SEQ_MODULUS, (junk,) * per_frame)
    statuses.append(write(framing.encode_frame(frame)))
print(json.dumps({"transfer": size, "packets_per_frame": per_frame, "statuses": statuses}))
"""


@pytest.fixture(scope="module")
def tunnel(topology: Topology) -> Iterator[OneGuestTunnel]:
    with one_guest_tunnel(topology, offload=True, target_args=f"--reorder-bytes {BUDGET} --reorder-timeout 5") as t:
        yield t


def target_pid(t: OneGuestTunnel) -> int:
    pid = int(t.run(f"cat {t.directory}/target.pid", timeout=30).strip())
    assert "target_daemon" in t.run(f"tr '\\0' ' ' < /proc/{pid}/cmdline", timeout=30)
    return pid


def memory_kib(t: OneGuestTunnel, pid: int) -> dict[str, int]:
    status = t.run(f"cat /proc/{pid}/status", timeout=30)
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


def counters(t: OneGuestTunnel, pid: int) -> dict[str, object]:
    """The target daemon's counters, asked for with SIGUSR1."""
    return live_fuzz.target_counters(t.node, pid, f"{t.directory}/target.log")


def test_hostile_peer_cannot_grow_the_target_and_the_tunnel_recovers(tunnel: OneGuestTunnel) -> None:
    """Maximum-size frames ahead of a never-filled gap: peak RSS within the byte budget, every frame counted
    (held, or dropped over budget), the released junk stopped by the virtio-net check, ping crosses again,
    and no kernel complaint."""
    t = tunnel
    pid = target_pid(t)
    marker = mark_kernel_log(t.node, "ipofc hostile peer")
    t.run(f"echo 5 > /proc/{pid}/clear_refs", timeout=30)  # peak RSS := current RSS
    rest = memory_kib(t, pid)["VmRSS"]
    first_counters = counters(t, pid)
    first = 0x7000_0000
    out = t.node.run(f"cd {t.directory} && python3 - {t.sg} {first} {FRAMES}", stdin=PEER, timeout=900).stdout
    peer = json.loads(out.strip().splitlines()[-1])
    assert set(peer["statuses"]) == {0}, f"the target refused valid frames: {peer['statuses']}"
    time.sleep(7)  # past the reorder timeout: the gap is declared lost, what was held is released
    peak = memory_kib(t, pid)["VmHWM"]
    after = counters(t, pid)

    bound = (BUDGET + TRANSIENT_TRANSFERS * peer["transfer"]) // 1024
    sent_kib = FRAMES * peer["transfer"] // 1024
    assert peak - rest <= bound, (
        f"target RSS grew by {peak - rest} KiB for {sent_kib} KiB of out-of-order frames (bound {bound} KiB)"
    )
    rx0, rx = first_counters["receiver"], after["receiver"]
    assert isinstance(rx0, dict) and isinstance(rx, dict)
    delta = {k: rx[k] - rx0[k] for k in ("frames", "dropped_over_budget", "late", "resyncs")}
    assert delta["dropped_over_budget"] > 0, f"nothing was dropped over budget for {sent_kib} KiB sent: {after}"
    # Each frame was held, dropped over budget or (after the gap expired) late; the real initiator's
    # own frames may add to "frames" and "late", never take away.
    accounted = delta["frames"] + delta["dropped_over_budget"] + delta["late"]
    assert accounted >= FRAMES, f"only {accounted} of the {FRAMES} frames sent are counted: {delta}"
    assert delta["resyncs"] >= 1, after  # the peer's announcement
    invalid, invalid0 = after["invalid_vnet"], first_counters["invalid_vnet"]
    assert isinstance(invalid, dict) and isinstance(invalid0, dict)
    released = sum(invalid.values()) - sum(invalid0.values())
    # Released frames reach the TUN whole: every junk packet of each is stopped by the header check.
    assert released > 0 and released % peer["packets_per_frame"] == 0, f"invalid headers {invalid}, {delta}"
    assert after["tun_write_drops"] == first_counters["tun_write_drops"], after

    reached = False
    deadline = time.monotonic() + 60
    while not reached and time.monotonic() < deadline:
        reached = " 1 received" in t.in_ns(1, f"ping -c 1 -W 2 {TEST_NET[0]}", timeout=30, check=False)
    assert reached, f"no ping crossed the tunnel within 60 s after the hostile peer: {counters(t, pid)}"
    result = parse_ping(t.in_ns(1, f"ping -c 10 -i 0.2 -W 5 {TEST_NET[0]}", timeout=120, check=False))
    assert result.received == result.transmitted == 10, result
    complaints = bad_kernel_lines(kernel_lines_since(t.node, marker))
    assert not complaints, f"kernel complained during the hostile peer: {complaints}"


def max_transfer(t: OneGuestTunnel) -> int:
    """The largest transfer the initiator daemon allows (its ``ready`` line)."""
    found = re.search(r"max_transfer=(\d+)", t.run(f"cat {t.directory}/initiator.out", timeout=30))
    assert found, "the initiator daemon printed no max_transfer"
    return int(found[1])


@settings(
    max_examples=FUZZ_BATCHES,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: a batch's findings are reported at once
    suppress_health_check=list(HealthCheck),
)
@given(
    cdbs=st.lists(strategies.cdbs(), min_size=FUZZ_BATCH, max_size=FUZZ_BATCH),
    frames=st.lists(strategies.data_out_frames(4, 200), min_size=FUZZ_BATCH, max_size=FUZZ_BATCH),
    big=st.lists(st.booleans(), min_size=FUZZ_BATCH, max_size=FUZZ_BATCH),
)
def fuzz_batch(
    cdbs: list[bytes], frames: list[tuple[str, bytes]], big: list[bool], *, run: Callable[..., list[str]]
) -> None:
    """One generated batch through the live target; every answer judged by the oracle."""
    problems = run(cdbs, frames, big)
    assert not problems, f"{len(problems)} answers break SPC or the framing rules:\n  " + "\n  ".join(problems[:20])


def test_live_fuzz_reaches_the_decoder_and_the_oracle_agrees(tunnel: OneGuestTunnel) -> None:
    """Fuzzed CDBs, fuzzed WRITE frames (valid, truncated, lying, wrong count, bad CRC, garbage; some at the
    largest transfer) and largest-transfer READs, while pings cross: every answer obeys SPC and the frame
    rules, sg_decode_sense reads every sense as the oracle does, the target counted every WRITE it refused
    for its data-out, the tunnel carries traffic afterwards and the kernel stayed quiet."""
    t = tunnel
    pid = target_pid(t)
    transfer = max_transfer(t)
    marker = mark_kernel_log(t.node, "ipofc live fuzz")
    before = counters(t, pid)
    sender = live_fuzz.Sender(t.node, t.sg, transfer)
    tally = live_fuzz.Tally.empty()
    pinger = f"{t.directory}/fuzz-ping"
    t.in_ns(1, f"sh -c 'ping -i 0.5 -W 5 {TEST_NET[0]} > {pinger}.out 2>&1 & echo $! > {pinger}.pid'", timeout=30)
    try:

        def run(cdbs: list[bytes], frames: list[tuple[str, bytes]], big: list[bool]) -> list[str]:
            requests = live_fuzz.requests_for(cdbs, frames, reads=FUZZ_READS, max_transfer=transfer, big=big)
            return live_fuzz.run_batch(sender, requests, tally)

        fuzz_batch(run=run)
    finally:
        t.run(f"kill $(cat {pinger}.pid) 2>/dev/null; true", timeout=30)
        sender.close()
    after = counters(t, pid)
    print(f"live fuzz: sent {tally.sent}, {len(tally.senses)} distinct sense buffers, counters {after}")
    kinds = {k for k in tally.sent if k.startswith("frame:")}
    assert tally.sent.get("read", 0) and len(kinds) >= 4, f"the fuzz did not vary its frames: {tally.sent}"
    disagreements = live_fuzz.sg3_disagreements(t.node, tally.senses)
    assert not disagreements, "sg_decode_sense reads sense differently:\n  " + "\n  ".join(disagreements)
    rejected = live_fuzz.rejected_total(after) - live_fuzz.rejected_total(before)
    assert rejected == tally.parameter_list_refusals, (
        f"the target counted {rejected} rejected WRITE frames, the initiator saw {tally.parameter_list_refusals}"
        f" parameter list refusals: {after['rejected_frames']}"
    )
    reached = False
    deadline = time.monotonic() + 60
    while not reached and time.monotonic() < deadline:
        reached = " 1 received" in t.in_ns(1, f"ping -c 1 -W 2 {TEST_NET[0]}", timeout=30, check=False)
    result = parse_ping(t.in_ns(1, f"ping -c 10 -i 0.2 -W 5 {TEST_NET[0]}", timeout=120, check=False))
    assert result.received == result.transmitted == 10, f"after the fuzz: {result}"
    complaints = bad_kernel_lines(kernel_lines_since(t.node, marker))
    assert not complaints, f"kernel complained during the live fuzz: {complaints}"
