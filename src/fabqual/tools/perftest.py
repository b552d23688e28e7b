"""perftest (ib_*_bw / ib_*_lat): server on one node, client on the other, parsed.

Formats are those of Debian 12's perftest 4.5-0.17 (``src/perftest_parameters.h``
and ``.c`` at linux-rdma/perftest tag v4.5-0.17):

- The text table: a title (``RDMA_Write BW Test``), ``Key : value`` lines, then
  ``#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]`` (with
  ``--report_gbits``; ``[MB/sec]`` = 2^20 B/s otherwise) or the latency header
  ``t_min[usec] … 99.9% percentile[usec]``, one row per size, closed by dashes.
  Rows print 6 decimals instead of 2 below 0.1 Gb/s. ``Conflicting CPU frequency
  values`` (stderr, without ``-F``) and ``Requested mtu is higher than active
  mtu`` can appear anywhere and are kept as notes.
- ``--out_json`` writes a file that is *not* JSON in this version (perftest#216,
  fixed later by PR #239): ``{`` / ``test_info: {`` / ``test: RDMA_Write_BW_Test,``
  / ``Device: "rxe0",`` / ``},`` … with unquoted keys and values and trailing
  commas. It is rewritten for each size, so run one size per call.
  :func:`read_perftest_json` reads both that and real JSON (perftest 25.x).

Older and newer releases (fixtures/outputs/perftest/releases/):

- perftest 1.x tables (OFED 1.5 era) have no ``MsgRate[Mpps]`` column, and
  latency tables before the percentiles (perftest < 4) only ``t_min t_max
  t_typical``. A column a release does not print is unknown (None), never 0.
- A ``nan``/``-nan``/``inf`` cell makes that one value unknown (None), not the
  whole sweep unusable; reading an unknown value that a threshold needs (e.g.
  :attr:`PerftestResult.lat_p99_us`) raises a ParseError naming the test, the
  size and the column, so a missing number can never pass. The exception is a
  failed clock calibration (every latency inf), which is the whole run's fault.
- Debian 11's perftest 4.4+0.37 has no ``--out_json`` (it prints its usage).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from fabqual.drivers.background import serving
from fabqual.drivers.rundir import private_dir
from fabqual.errors import CommandError, ParseError
from fabqual.executors.base import Executor, command_text, log_step
from fabqual.tools._numbers import non_negative, positive
from fabqual.tools.declare import Metric, ToolProbe, ToolSpec

TOOL = "perftest"
JSON_TOOL = "perftest --out_json"

SPEC = ToolSpec(
    TOOL,
    probes=(ToolProbe("ib_write_bw", "perftest"),),
    metrics=(
        Metric("bw_gbps", "Gb/s", ">=", "average bandwidth of a bandwidth test"),
        Metric("lat_typical_us", "us", "<=", "typical (median) latency of a latency test"),
        Metric("lat_p99_us", "us", "<=", "99th percentile latency of a latency test"),
    ),
    version="ib_write_bw --version",
)
LISTEN_TIMEOUT = 30.0

BW_TESTS = ("ib_write_bw", "ib_read_bw", "ib_send_bw")
LAT_TESTS = ("ib_write_lat", "ib_read_lat", "ib_send_lat")

# perftest's "MB" is 2^20 bytes (newer releases print it as MiB/sec).
_TO_GBPS = {"Gb/sec": 1.0, "MB/sec": 8 * 2**20 / 1e9, "MiB/sec": 8 * 2**20 / 1e9}

_TITLE = re.compile(r"^\s*([A-Za-z_]+(?: [A-Za-z_]+)*? (?:BW|Latency) Test)\s*$")
_DASHES = re.compile(r"^-{20,}\s*$")
_ROW_START = re.compile(r"^\s*\d+\s+\d+\s")
# perftest times latency in CPU cycles and converts with a clock it measures against
# gettimeofday; when that regression is poor it prints this and every latency is inf.
_CALIBRATION = re.compile(r"Correlation coefficient r\^2:\s*([\d.]+)\s*<\s*([\d.]+)")
CALIBRATION_ATTEMPTS = 3
_NUMBER_ROW = re.compile(r"^\s*\d+\s+\d+(?:\s+(?:-?[\d.]+(?:e[-+]?\d+)?|-?nan|-?inf))+\s*$", re.IGNORECASE)
_NOT_A_NUMBER = {"nan", "-nan", "inf", "-inf"}
_INFO_PAIR = re.compile(r"([A-Za-z][^:\t]*?)\s*:\s*([^\t]+?)\s*(?=\t|$)")


@dataclass(frozen=True)
class BwRow:
    """One size of a bandwidth test, in the unit of the result (see ``bw_unit``).

    None: the cell was nan/inf, or the release has no such column (MsgRate before perftest 2).
    """

    size: int
    iterations: int
    bw_peak: float | None  # 0.00 in duration mode (-D), where perftest does not measure the peak
    bw_avg: float | None
    msg_rate_mpps: float | None


@dataclass(frozen=True)
class LatRow:
    """One size of a latency test, in µs (perftest reports half the round trip).

    None: the cell was nan/inf, or the release has no such column (t_avg, t_stdev and
    the percentiles before perftest 4).
    """

    size: int
    iterations: int
    t_min_us: float | None
    t_max_us: float | None
    t_typical_us: float | None  # the median
    t_avg_us: float | None
    t_stdev_us: float | None
    p99_us: float | None
    p999_us: float | None


@dataclass(frozen=True)
class PerftestResult:
    """A parsed perftest run: bandwidth rows or latency rows (one per size)."""

    test: str
    bw_unit: str | None  # "Gb/sec", "MB/sec"; None for latency tests
    bw_rows: tuple[BwRow, ...]
    lat_rows: tuple[LatRow, ...]
    info: dict[str, str] = field(default_factory=dict)  # the Key : value block (Device, Mtu, ...)
    notes: tuple[str, ...] = ()  # warnings perftest printed

    @property
    def kind(self) -> str:
        return "bw" if self.bw_rows else "lat"

    @property
    def bw_gbps(self) -> float:
        """Average bandwidth of the last (with one size per call: the only) row, in Gb/s."""
        if not self.bw_rows or self.bw_unit is None:
            raise ParseError(TOOL, f"{self.test} has no bandwidth rows")
        row = self.bw_rows[-1]
        return self._known(row.bw_avg, row.size, "BW average") * _TO_GBPS[self.bw_unit]

    @property
    def lat_typical_us(self) -> float:
        row = self._lat()
        return self._known(row.t_typical_us, row.size, "t_typical")

    @property
    def lat_p99_us(self) -> float:
        row = self._lat()
        return self._known(row.p99_us, row.size, "99% percentile")

    @property
    def lat_avg_us(self) -> float:
        row = self._lat()
        return self._known(row.t_avg_us, row.size, "t_avg")

    def _lat(self) -> LatRow:
        if not self.lat_rows:
            raise ParseError(TOOL, f"{self.test} has no latency rows")
        return self.lat_rows[-1]

    def _known(self, value: float | None, size: int, column: str) -> float:
        """A value a threshold needs: an unknown one is an error naming test, size and column."""
        if value is None:
            raise ParseError(
                TOOL,
                f"{self.test} size {size}: {column} is unknown (nan/inf in perftest's table, or a column"
                " this perftest release does not print), so it cannot be judged",
            )
        return value


class ClockCalibrationError(ParseError):
    """perftest's own clock calibration failed: no latency was measured (worth running again)."""


def parse_perftest(output: str) -> PerftestResult:
    """Parse perftest's text report (client or server side; stderr may be mixed in)."""
    lines = output.splitlines()
    title = next((m[1] for line in lines if (m := _TITLE.match(line))), None)
    header_at = next((i for i, line in enumerate(lines) if line.lstrip().startswith("#bytes")), None)
    if header_at is None:
        raise ParseError(TOOL, "no result table (no '#bytes' header): the test did not run to the end", output)
    header = lines[header_at]
    notes = tuple(line.strip() for line in lines if _is_warning(line))
    info = _info(lines[:header_at])
    calibration = _CALIBRATION.search(output)
    if calibration:
        raise ClockCalibrationError(
            TOOL,
            f"perftest could not measure the CPU clock (correlation r^2 {calibration[1]} < {calibration[2]}),"
            " so its latencies are inf: the node's timing was too unsteady (a loaded host or VM)",
            output,
        )
    rows: list[list[str]] = []
    for line in lines[header_at + 1 :]:
        if _DASHES.match(line):
            break
        if _NUMBER_ROW.match(line):
            rows.append(line.split())
        elif _ROW_START.match(line):  # looks like a row (warnings never start with numbers) but is not one
            raise ParseError(TOOL, f"garbled result row {line.strip()!r}", output)
    else:
        raise ParseError(TOOL, "the result table is not closed by a dashed line: output truncated", output)
    if not rows:
        raise ParseError(TOOL, "the result table has a header but no rows", output)
    test = title or "perftest"
    if "BW average" in header:
        unit_match = re.search(r"BW average\[([^\]]+)\]", header)
        unit = unit_match[1] if unit_match else ""
        if unit not in _TO_GBPS:
            raise ParseError(TOOL, f"unknown bandwidth unit {unit!r} in the table header", output)
        bw = tuple(_bw_row(row, output) for row in rows)
        return PerftestResult(test=test, bw_unit=unit, bw_rows=bw, lat_rows=(), info=info, notes=notes)
    if "t_typical" in header:
        lat = tuple(_lat_row(row, output) for row in rows)
        return PerftestResult(test=test, bw_unit=None, bw_rows=(), lat_rows=lat, info=info, notes=notes)
    if "tps average" in header:
        raise ParseError(TOOL, "duration-mode latency (-D) reports only an average; run latency tests with -n", output)
    raise ParseError(TOOL, f"unknown table header {header.strip()!r}", output)


def _is_warning(line: str) -> bool:
    text = line.strip()
    return text.startswith(("WARNING", "Conflicting CPU frequency", "Requested mtu", "Changing to active mtu"))


def _info(lines: list[str]) -> dict[str, str]:
    """The ``Key : value`` block (two pairs per line, separated by tabs, in places)."""
    info: dict[str, str] = {}
    for line in lines:
        if _DASHES.match(line) or line.lstrip().startswith(("local address", "remote address", "GID:")):
            continue
        for key, value in _INFO_PAIR.findall(line):
            info.setdefault(key.strip(), value.strip())
    return info


def _cell(what: str, raw: str, output: str, *, zero_ok: bool = False) -> float | None:
    """One table cell: None when perftest printed nan/inf there, else a number that
    must be positive (or non-negative with ``zero_ok``)."""
    if raw.lower() in _NOT_A_NUMBER:
        return None
    return (non_negative if zero_ok else positive)(TOOL, what, raw, output)


def _bw_row(row: list[str], output: str) -> BwRow:
    # 5 columns; perftest 1.x printed no MsgRate (4 columns).
    if len(row) < 4:
        raise ParseError(TOOL, f"bandwidth row {' '.join(row)!r} has {len(row)} columns, expected 4 or 5", output)
    size = int(row[0])
    return BwRow(
        size=size,
        iterations=int(positive(TOOL, f"size {size} #iterations", row[1], output)),
        bw_peak=_cell(f"size {size} BW peak", row[2], output, zero_ok=True),
        bw_avg=_cell(f"size {size} BW average", row[3], output),
        msg_rate_mpps=_cell(f"size {size} MsgRate", row[4], output) if len(row) > 4 else None,
    )


_LAT_COLUMNS = ("t_min", "t_max", "t_typical", "t_avg", "t_stdev", "99% percentile", "99.9% percentile")


def _lat_row(row: list[str], output: str) -> LatRow:
    # 9 columns; before perftest 4 only t_min, t_max and t_typical (5 columns).
    if len(row) < 5:
        raise ParseError(TOOL, f"latency row {' '.join(row)!r} has {len(row)} columns, expected 5 or 9", output)
    size = int(row[0])
    cells = row[2:9]
    values = [
        _cell(f"size {size} {name}", cells[index], output, zero_ok=name == "t_stdev") if index < len(cells) else None
        for index, name in enumerate(_LAT_COLUMNS)
    ]
    return LatRow(size, int(positive(TOOL, f"size {size} #iterations", row[1], output)), *values)


def read_perftest_json(text: str) -> dict[str, dict[str, Any]]:
    """Sections of an ``--out_json`` file: real JSON, or 4.5-0.17's near-JSON
    (unquoted keys and values, trailing commas)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        pass
    else:
        if isinstance(data, dict) and all(isinstance(value, dict) for value in data.values()):
            return data
        raise ParseError(JSON_TOOL, "expected an object of sections (test_info, results)", text)
    sections: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    opened = closed = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if closed:
            raise ParseError(JSON_TOOL, f"line {number}: text after the closing brace: {raw!r}", text)
        if line == "{" and not opened:
            opened = True
            continue
        if not opened:
            raise ParseError(JSON_TOOL, f"line {number}: expected '{{', found {raw!r}", text)
        if line in ("}", "},"):
            if current is not None:
                current = None
            else:
                closed = True
            continue
        key, colon, value = line.partition(":")
        if not colon or not key.strip():
            raise ParseError(JSON_TOOL, f"line {number} is not 'key: value': {raw!r}", text)
        # Keys unquoted (4.5-0.17) or quoted (real JSON that a nan cell made undecodable).
        key, value = _unquoted(key.strip()), value.strip().removesuffix(",").strip()
        if value == "{":
            if current is not None:
                raise ParseError(JSON_TOOL, f"line {number}: section {key!r} inside another section", text)
            current = sections.setdefault(key, {})
        elif current is None:
            raise ParseError(JSON_TOOL, f"line {number}: {key!r} outside a section", text)
        else:
            current[key] = _scalar(value)
    if not closed:
        raise ParseError(JSON_TOOL, "no closing brace: the file is truncated", text)
    return sections


def _unquoted(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _scalar(value: str) -> Any:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_perftest_json(text: str, *, bw_unit: str = "Gb/sec") -> PerftestResult:
    """Parse an ``--out_json`` file (one size). The file does not say its bandwidth
    unit: pass ``bw_unit="MB/sec"`` for runs without ``--report_gbits``."""
    sections = read_perftest_json(text)
    info, results = sections.get("test_info"), sections.get("results")
    if info is None or results is None:
        raise ParseError(JSON_TOOL, f"sections test_info and results are needed, found {sorted(sections)}", text)
    test = str(info.get("test", "perftest"))
    if "MsgSize" not in results:
        raise ParseError(JSON_TOOL, "results has no MsgSize (was --output=bandwidth/latency given?)", text)
    size = int(positive(JSON_TOOL, "MsgSize", results["MsgSize"], text))
    iterations = int(positive(JSON_TOOL, "n_iterations", results.get("n_iterations"), text))
    text_info = {key: str(value) for key, value in info.items()}

    def number(key: str, *, zero_ok: bool = False) -> float | None:
        if key not in results:
            raise ParseError(JSON_TOOL, f"results has no {key}", text)
        raw = results[key]
        if (isinstance(raw, float) and not math.isfinite(raw)) or str(raw).lower() in _NOT_A_NUMBER:
            return None  # nan/inf in the file: that value is unknown, as in the table
        check = non_negative if zero_ok else positive
        return check(JSON_TOOL, key, raw, text)

    if "BW_average" in results:
        if bw_unit not in _TO_GBPS:
            raise ValueError(f"bw_unit {bw_unit!r} is not one of {sorted(_TO_GBPS)}")
        row = BwRow(size, iterations, number("BW_peak", zero_ok=True), number("BW_average"), number("MsgRate"))
        return PerftestResult(test=test, bw_unit=bw_unit, bw_rows=(row,), lat_rows=(), info=text_info)
    if "t_typical" in results:
        lat = LatRow(
            size,
            iterations,
            number("t_min"),
            number("t_max"),
            number("t_typical"),
            number("t_avg"),
            number("t_stdev", zero_ok=True),
            number("percentile_99"),
            number("percentile_99.9"),
        )
        return PerftestResult(test=test, bw_unit=None, bw_rows=(), lat_rows=(lat,), info=text_info)
    if "tps_average" in results:
        raise ParseError(JSON_TOOL, "duration-mode latency (-D) reports only an average; run with -n", text)
    raise ParseError(JSON_TOOL, "results has neither BW_average nor t_typical", text)


# A fresh port per run: a server left over from an interrupted run cannot answer.
_ports = itertools.count(18600 + os.getpid() % 1000)


def perftest_command(
    test: str,
    *,
    device: str,
    gid_index: int,
    port: int,
    size: int | None,
    iterations: int | None = None,
    duration_s: int | None = None,
    json_file: str | None = None,
    extra: tuple[str, ...] = (),
    server_address: str | None = None,
) -> list[str]:
    """One side's command line; the client is the one given ``server_address``."""
    if test not in BW_TESTS + LAT_TESTS:
        raise ValueError(f"perftest test {test!r} is not one of {BW_TESTS + LAT_TESTS}")
    if duration_s is not None and test in LAT_TESTS:
        raise ValueError("latency tests run by iterations (-n): -D reports only an average")
    if json_file is not None and size is None:
        raise ValueError("--out_json keeps only the last size: give size= for one size per call")
    # -F: never print CPU-frequency warnings into the table (perftest's own advice).
    command = [test, "-d", device, "-x", str(gid_index), "-F", "-p", str(port)]
    if test in BW_TESTS:
        command.append("--report_gbits")
    command += ["-a"] if size is None else ["-s", str(size)]
    if iterations is not None:
        command += ["-n", str(iterations)]
    if duration_s is not None:
        command += ["-D", str(duration_s)]
    if json_file is not None:
        command += ["--out_json", f"--out_json_file={json_file}"]
    command += list(extra)
    if server_address is not None:
        command.append(server_address)
    return command


def run_perftest(
    server: Executor,
    client: Executor,
    *,
    test: str,
    device: str,
    gid_index: int,
    server_address: str,
    size: int | None,
    iterations: int | None = None,
    duration_s: int | None = None,
    out_json: bool = False,
    extra: tuple[str, ...] = (),
    client_device: str | None = None,
    client_gid_index: int | None = None,
    port: int | None = None,
    timeout_s: float = 300.0,
) -> PerftestResult:
    """Start the server side in the background, run the client against it, parse the
    client's report (or its ``--out_json`` file); the server is always stopped and
    its files removed, also on failure.

    ``timeout_s`` bounds an iteration-count run; with ``duration_s`` the bound is
    derived from it (one size, or the 23 sizes of ``-a``). A run whose latencies
    are inf because perftest could not calibrate its clock is run again, up to
    :data:`CALIBRATION_ATTEMPTS` times, on a fresh port.
    """
    if duration_s is not None:
        timeout_s = duration_s * (1 if size is not None else 23) + 60
    common: dict[str, Any] = {"size": size, "iterations": iterations, "duration_s": duration_s, "extra": extra}

    def attempt() -> PerftestResult:
        this_port = port if port is not None else next(_ports)
        server_cmd = perftest_command(test, device=device, gid_index=gid_index, port=this_port, **common)
        client_cmd = perftest_command(
            test,
            device=client_device or device,
            gid_index=gid_index if client_gid_index is None else client_gid_index,
            port=this_port,
            json_file=f"{_files(client, this_port)}.json" if out_json else None,
            server_address=server_address,
            **common,
        )
        return _server_and_client(server, client, server_cmd, client_cmd, this_port, timeout_s, out_json)

    for number in range(1, CALIBRATION_ATTEMPTS):
        try:
            return attempt()
        except ClockCalibrationError as error:
            first_line = str(error).splitlines()[0]
            log_step(client.node, f"{first_line}; running {test} again ({number + 1}/{CALIBRATION_ATTEMPTS})")
    return attempt()


def _files(executor: Executor, port: int) -> str:
    """Where one run keeps its server log or JSON report on a node (plus a suffix): the run's own directory."""
    return f"{private_dir(executor)}/perftest-{port}"


def _server_and_client(
    server: Executor,
    client: Executor,
    server_cmd: list[str],
    client_cmd: list[str],
    port: int,
    timeout_s: float,
    out_json: bool,
) -> PerftestResult:
    """One run: the server in the background, the client against it, its report parsed; the server stopped."""
    test = server_cmd[0]
    json_base = _files(client, port)
    serve = f"exec timeout {int(timeout_s) + 30} {command_text(server_cmd)}"
    try:
        with serving(server, f"{test} server port {port}", serve) as process:
            process.wait_for_port(port, timeout=LISTEN_TIMEOUT)  # a client started earlier is refused
            log_step(client.node, f"{test} client to {client_cmd[-1]}:{port}")
            result = client.run(
                f"timeout {int(timeout_s)} {command_text(client_cmd)}", timeout=timeout_s + 30, check=False
            )
            output = result.stdout + result.stderr
            if not result.ok:
                # The table, if any, says more than the exit status; if none, show both sides.
                try:
                    parse_perftest(output)
                except ParseError as error:
                    both = f"{output}\n--- server ---\n{process.log_tail(40)}"
                    raise ParseError(TOOL, f"{test} client exited {result.exit_status}: {error}", both) from None
                raise CommandError(result)
            if out_json:
                text = client.run(f"cat {json_base}.json", timeout=30, check=False).stdout
                return parse_perftest_json(text, bw_unit="Gb/sec")
            return parse_perftest(output)
    finally:
        if out_json:
            client.run(f"rm -f {json_base}.json", timeout=30, check=False)
