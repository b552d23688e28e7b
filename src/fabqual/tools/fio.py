"""fio: run a job on a node and parse its ``--output-format=json`` report.

Quirks handled (fio 3.33 on Debian 12, plus the layouts racks run; fixtures in
fixtures/outputs/fio/ say where each came from):

- fio writes error lines (``fio: io_u error on file …``, ``fio: pid=…, err=…``)
  to stderr, and when stderr and stdout share a channel they land *before* the
  JSON (axboe/fio#731, #1685); some warnings go to stdout before it anyway. The
  JSON starts at the first line that starts with ``{``.
- A failed job still yields a well-formed report, with ``"error" : <errno>`` and
  zero I/O; fio exits 1 then. A non-zero ``error`` is reported as a ParseError
  naming the job and the errno, so such a run can never count as a pass.
- Units by release: fio >= 3.0 has ``bw_bytes`` (B/s), ``io_bytes`` in bytes and
  latencies in ns (``clat_ns``). fio 2.x has no ``bw_bytes``: ``bw`` is KiB/s,
  ``io_bytes`` is KiB (fio 3.0 renamed that to ``io_kbytes``) and ``clat`` is in
  µs. fio < 2.2 has no ``total_ios`` and older 2.x no ``job options``: the
  workload is then read from the directions that did I/O. ``percentile`` is
  missing when a direction did no I/O.
- Client/server runs (``fio --client``) report under ``client_stats`` instead of
  ``jobs``; with several servers fio adds an ``All clients`` entry that already
  sums them, so it is the total and not one more job.
- With ``--verify`` a write job also reports the verify reads under ``read``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, Unpack

from fabqual.errors import CommandError, ParseError
from fabqual.executors.base import Executor, command_text, log_step
from fabqual.tools._numbers import non_negative, positive
from fabqual.tools.declare import Metric, ToolProbe, ToolSpec

TOOL = "fio"

SPEC = ToolSpec(
    TOOL,
    probes=(ToolProbe("fio", "fio", version="fio --version", minimum=(3, 0)),),
    metrics=(
        Metric("iops", "IOPS", ">=", "I/O operations per second, all jobs"),
        Metric("bw_mbps", "MB/s", ">=", "bandwidth, 10^6 bytes per second"),
        Metric("clat_p99_us", "us", "<=", "99th percentile completion latency"),
    ),
    version="fio --version",
)

# Which directions a workload must show I/O in (fio's own rw names and aliases).
_READS = {"read", "randread", "rw", "readwrite", "randrw"}
_WRITES = {"write", "randwrite", "rw", "readwrite", "randrw", "trimwrite"}


@dataclass(frozen=True)
class FioDirection:
    """What one direction (read or write) of a job, or of all jobs together, did."""

    iops: float
    bw_bytes: float  # bytes per second
    io_bytes: int
    total_ios: int | None  # None: fio < 2.2 does not report it
    runtime_ms: float
    clat_mean_us: float
    clat_p50_us: float
    clat_p99_us: float
    clat_p999_us: float

    @property
    def bw_mbps(self) -> float:
        """Bandwidth in MB/s (10^6 bytes per second), the unit the thresholds use."""
        return self.bw_bytes / 1e6


@dataclass(frozen=True)
class FioJob:
    """One entry of the report's ``jobs`` list (one per job, or one with group_reporting)."""

    name: str
    rw: str
    read: FioDirection | None
    write: FioDirection | None


@dataclass(frozen=True)
class FioResult:
    """A whole fio report. ``read``/``write`` sum all jobs (None: no I/O that way)."""

    version: str
    jobs: tuple[FioJob, ...]
    read: FioDirection | None
    write: FioDirection | None
    notes: tuple[str, ...]  # lines fio printed around the JSON (warnings)

    def direction(self, rw: str) -> FioDirection:
        """The direction a workload is judged on: write for writes, read otherwise."""
        wanted = self.write if rw in _WRITES and rw not in _READS else self.read
        if wanted is None:  # parse_fio guarantees it for the job's own rw; this guards misuse
            raise ParseError(TOOL, f"the report has no {'write' if rw in _WRITES else 'read'} results for rw={rw}")
        return wanted


def parse_fio(output: str) -> FioResult:
    """Parse fio's JSON report (fio 2.x or 3.x, local or ``--client``); ``output``
    may carry error lines before or after it."""
    start = _json_start(output)
    if start is None:
        raise ParseError(TOOL, "no JSON report found (was --output-format=json given?)", output)
    try:
        data, end = json.JSONDecoder().raw_decode(output, start)
    except json.JSONDecodeError as error:
        problem = f"{error.msg} at line {error.lineno}"
        raise ParseError(TOOL, f"the JSON report is truncated or malformed ({problem})", output) from None
    notes = tuple(line.strip() for line in (output[:start] + output[end:]).splitlines() if line.strip())
    if not isinstance(data, dict):
        raise ParseError(TOOL, "the JSON report is not an object", output)
    raw_jobs = data.get("jobs", data.get("client_stats"))
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise ParseError(TOOL, "the report has no jobs (neither 'jobs' nor 'client_stats')", output)
    global_options = _section(data, "global options")
    summary = [raw for raw in raw_jobs if isinstance(raw, dict) and raw.get("jobname") == _ALL_CLIENTS]
    jobs = tuple(_job(raw, global_options, notes, output) for raw in raw_jobs if not any(raw is s for s in summary))
    if not jobs:
        raise ParseError(TOOL, f"the report has only the {_ALL_CLIENTS!r} summary and no job", output)
    total = _job(summary[0], global_options, notes, output) if summary else None
    return FioResult(
        version=str(data.get("fio version", "")),
        jobs=jobs,
        read=total.read if total else _combine([job.read for job in jobs if job.read is not None]),
        write=total.write if total else _combine([job.write for job in jobs if job.write is not None]),
        notes=notes,
    )


# The entry fio --client adds when it talked to several servers: their sum.
_ALL_CLIENTS = "All clients"


def _json_start(output: str) -> int | None:
    """Offset of the line that opens fio's report (fio prints a lone ``{``; error
    lines before it start with ``fio:`` or a job name, never with a brace)."""
    offset = 0
    for line in output.splitlines(keepends=True):
        if line.lstrip().startswith("{"):
            return offset + line.index("{")
        offset += len(line)
    return None


def _job(raw: Any, global_options: dict[str, Any], notes: tuple[str, ...], output: str) -> FioJob:
    if not isinstance(raw, dict):
        raise ParseError(TOOL, "a jobs entry is not an object", output)
    name = str(raw.get("jobname", "?"))
    error = raw.get("error", 0)
    if error:
        reason = os.strerror(error) if isinstance(error, int) else str(error)
        # The tail worth showing is fio's own error lines, not the end of the JSON.
        raise ParseError(TOOL, f"job {name!r} failed with error {error} ({reason})", "\n".join(notes) or output)
    options = _section(raw, "job options")
    sections = {direction: _section(raw, direction) for direction in ("read", "write")}
    did_io = {direction: _did_io(section) for direction, section in sections.items()}
    given = options.get("rw") or global_options.get("rw")
    # Older fio does not echo the options: the directions that did I/O tell the workload.
    inferred = {(True, True): "rw", (False, True): "write"}.get((did_io["read"], did_io["write"]), "read")
    rw = str(given) if given else inferred
    parsed: dict[str, FioDirection | None] = {}
    for direction, required in (("read", rw in _READS), ("write", rw in _WRITES)):
        if required and not did_io[direction]:
            raise ParseError(TOOL, f"job {name!r} (rw={rw}) did no {direction} I/O: total_ios is 0 or missing", output)
        what = f"job {name!r} {direction}"
        parsed[direction] = _direction(what, sections[direction], output) if did_io[direction] else None
    return FioJob(name=name, rw=rw, read=parsed["read"], write=parsed["write"])


def _did_io(section: dict[str, Any]) -> bool:
    """Whether a direction did I/O: ``total_ios`` where fio reports it (>= 2.2), else ``io_bytes``."""
    count = section.get("total_ios", section.get("io_bytes"))
    return isinstance(count, int | float) and not isinstance(count, bool) and count > 0


def _section(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _direction(what: str, section: dict[str, Any], output: str) -> FioDirection:
    # fio >= 3.0 reports clat_ns in ns; older fio reports clat in µs.
    if isinstance(section.get("clat_ns"), dict):
        clat, to_us = section["clat_ns"], 1e-3
    elif isinstance(section.get("clat"), dict):
        clat, to_us = section["clat"], 1.0
    else:
        raise ParseError(TOOL, f"{what}: no clat_ns (completion latency) section", output)
    percentiles = clat.get("percentile")
    if not isinstance(percentiles, dict):
        raise ParseError(TOOL, f"{what}: no clat percentiles (was percentile reporting turned off?)", output)

    def percentile(key: str) -> float:
        if key not in percentiles:
            raise ParseError(TOOL, f"{what}: clat percentile {key} is missing", output)
        return positive(TOOL, f"{what} clat p{float(key):g}", percentiles[key], output) * to_us

    if "bw_bytes" in section:  # fio >= 3.0: bytes
        bw_bytes = positive(TOOL, f"{what} bw_bytes", section["bw_bytes"], output)
        io_bytes = positive(TOOL, f"{what} io_bytes", section.get("io_bytes"), output)
    else:  # fio 2.x: bw in KiB/s, io_bytes in KiB
        bw_bytes = positive(TOOL, f"{what} bw (KiB/s, fio 2.x)", section.get("bw"), output) * 1024
        io_bytes = positive(TOOL, f"{what} io_bytes (KiB, fio 2.x)", section.get("io_bytes"), output) * 1024
    total_ios = section.get("total_ios")
    return FioDirection(
        iops=positive(TOOL, f"{what} iops", section.get("iops"), output),
        bw_bytes=bw_bytes,
        io_bytes=int(io_bytes),
        total_ios=None if total_ios is None else int(positive(TOOL, f"{what} total_ios", total_ios, output)),
        runtime_ms=non_negative(TOOL, f"{what} runtime", section.get("runtime"), output),
        clat_mean_us=positive(TOOL, f"{what} clat mean", clat.get("mean"), output) * to_us,
        clat_p50_us=percentile("50.000000"),
        clat_p99_us=percentile("99.000000"),
        clat_p999_us=percentile("99.900000"),
    )


def _combine(parts: list[FioDirection]) -> FioDirection | None:
    """Sum of jobs: rates add up; the mean is weighted by I/O count (by bytes when
    fio < 2.2 gives no count: one workload has one block size); a percentile is
    the worst job's (exact merging needs the histograms; run with group_reporting
    for exact numbers, as run_fio does)."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    counts = [part.total_ios for part in parts]
    known = [count for count in counts if count is not None]
    weights = known if len(known) == len(parts) else [part.io_bytes for part in parts]
    return FioDirection(
        iops=math.fsum(part.iops for part in parts),
        bw_bytes=math.fsum(part.bw_bytes for part in parts),
        io_bytes=sum(part.io_bytes for part in parts),
        total_ios=sum(known) if len(known) == len(parts) else None,
        runtime_ms=max(part.runtime_ms for part in parts),
        clat_mean_us=math.fsum(part.clat_mean_us * w for part, w in zip(parts, weights, strict=True)) / sum(weights),
        clat_p50_us=max(part.clat_p50_us for part in parts),
        clat_p99_us=max(part.clat_p99_us for part in parts),
        clat_p999_us=max(part.clat_p999_us for part in parts),
    )


class FioWorkload(TypedDict):
    """One fio workload: the keywords of :func:`fio_command` and :func:`run_fio`.

    ``size`` (default: the whole file or device) bounds the region; ``verify``
    (a fio verify method such as crc32c, default none) makes a write read every
    block back; ``numjobs`` defaults to 1, ``direct`` (O_DIRECT) to true.
    """

    filename: str
    rw: str
    bs: str
    iodepth: int
    runtime_s: int
    size: NotRequired[str | None]
    verify: NotRequired[str | None]
    numjobs: NotRequired[int]
    direct: NotRequired[bool]


def fio_command(*, name: str = "fabqual", **workload: Unpack[FioWorkload]) -> list[str]:
    """The exact fio command line run_fio runs (also recorded in reports)."""
    rw, size, verify = workload["rw"], workload.get("size"), workload.get("verify")
    numjobs = workload.get("numjobs", 1)
    if rw not in _READS | _WRITES:
        raise ValueError(f"fio rw={rw!r} is not one of {sorted(_READS | _WRITES)}")
    verified = verify is not None
    if verified and rw not in _WRITES:
        raise ValueError(f"verify={verify} needs a write workload, not rw={rw}")
    if verified and size is None:
        raise ValueError("a verified write needs size= (fio would otherwise write and verify the whole device)")
    command = [
        "fio",
        f"--name={name}",
        f"--filename={workload['filename']}",
        f"--rw={rw}",
        f"--bs={workload['bs']}",
        f"--iodepth={workload['iodepth']}",
        f"--numjobs={numjobs}",
        "--ioengine=libaio",
        f"--direct={1 if workload.get('direct', True) else 0}",
        f"--runtime={workload['runtime_s']}",
        "--output-format=json",
    ]
    if numjobs > 1:
        command.append("--group_reporting=1")  # exact combined percentiles
    if size is not None:
        command.append(f"--size={size}")
    if verified:
        # No --time_based: fio writes the region once and then reads every block
        # back; time-based looping would overwrite blocks before they are verified.
        command += [f"--verify={verify}", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"]
        if numjobs > 1:
            # Each job writes and verifies its own region; jobs sharing blocks
            # would overwrite each other's data and fail verification.
            command.append(f"--offset_increment={size}")
    else:
        command.append("--time_based")
    return command


def run_fio(executor: Executor, **workload: Unpack[FioWorkload]) -> FioResult:
    """Run one fio workload on the executor's node and parse it.

    Raises ParseError when the report is missing, a job failed, or a number is
    missing or zero; CommandError when fio exited non-zero with a clean report.
    """
    command = fio_command(**workload)
    rw, bs, iodepth, filename = workload["rw"], workload["bs"], workload["iodepth"], workload["filename"]
    numjobs, verify = workload.get("numjobs", 1), workload.get("verify")
    log_step(executor.node, f"fio {rw} bs={bs} qd={iodepth} jobs={numjobs} on {filename}")
    # Verified writes run write then read-back: allow twice the runtime, plus start-up.
    timeout = workload["runtime_s"] * (3 if verify else 1) + 60
    result = executor.run(command_text(command), timeout=timeout, check=False)
    # stderr first: that is where fio's error lines come from, before the report.
    parsed = parse_fio(result.stderr + result.stdout)
    if not result.ok:
        raise CommandError(result)
    return parsed
