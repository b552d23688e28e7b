"""perftest tables and --out_json (Debian 12's 4.5-0.17; 4.4 and 25.01 with the lab captures), and command lines.

SOURCE_DERIVED samples (fixtures/outputs/perftest/source-derived/) were rendered
from perftest v4.5-0.17's own printf formats because no RDMA device existed here
at first; see their README.md. ``no_device.txt`` is a real capture from the dev
host. REAL captures from the emulated lab (rxe between the two guests) are in
fixtures/outputs/perftest/lab/, each with an ``.origin`` file, and are tested at
the end of this module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabqual.errors import LabError, ParseError
from fabqual.executors.local import LocalExecutor
from fabqual.tools.perftest import (
    BwRow,
    ClockCalibrationError,
    LatRow,
    parse_perftest,
    parse_perftest_json,
    perftest_command,
    read_perftest_json,
    run_perftest,
)

ROOT = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "perftest"
SOURCE_DERIVED = ROOT / "source-derived"
LAB = ROOT / "lab"


def derived(name: str) -> str:
    """A sample rendered from perftest's source formats (NOT a capture)."""
    return (SOURCE_DERIVED / name).read_text()


# ---- text tables (source-derived) ----


def test_write_bw_table() -> None:
    result = parse_perftest(derived("ib_write_bw_65536_client.txt"))
    assert result.test == "RDMA_Write BW Test" and result.kind == "bw" and result.bw_unit == "Gb/sec"
    row = result.bw_rows[0]
    assert (row.size, row.iterations, row.bw_peak, row.bw_avg, row.msg_rate_mpps) == (65536, 5000, 0.12, 0.11, 0.00021)
    assert result.bw_gbps == 0.11
    assert result.info["Device"] == "rxe0" and result.info["Mtu"] == "1024[B]" and result.info["GID index"] == "1"
    assert result.info["Link type"] == "Ethernet" and result.info["Transport type"] == "IB"
    assert result.notes == ()


def test_send_bw_six_decimals_and_cpu_frequency_warning_ignored() -> None:
    result = parse_perftest(derived("ib_send_bw_4096_cpufreq_warning.txt"))
    assert result.test == "Send BW Test"
    assert result.bw_rows[0].bw_avg == 0.094213 and result.bw_rows[0].size == 4096
    assert result.notes[0].startswith("Conflicting CPU frequency values detected")


def test_read_bw_mtu_warning_kept_as_note() -> None:
    result = parse_perftest(derived("ib_read_bw_65536_mtu_warning.txt"))
    assert result.test == "RDMA_Read BW Test" and result.bw_gbps == 0.12
    assert result.notes == ("Requested mtu is higher than active mtu", "Changing to active mtu - 3")
    assert result.info["Outstand reads"] == "128"


def test_write_lat_table() -> None:
    result = parse_perftest(derived("ib_write_lat_2_client.txt"))
    assert result.test == "RDMA_Write Latency Test" and result.kind == "lat" and result.bw_unit is None
    row = result.lat_rows[0]
    assert (row.size, row.iterations) == (2, 1000)
    assert (row.t_min_us, row.t_max_us, row.t_typical_us, row.t_avg_us) == (180.33, 2890.51, 271.62, 288.47)
    assert (row.t_stdev_us, row.p99_us, row.p999_us) == (97.05, 771.20, 2890.51)
    assert (result.lat_typical_us, result.lat_p99_us, result.lat_avg_us) == (271.62, 771.20, 288.47)
    with pytest.raises(ParseError, match="has no bandwidth rows"):
        _ = result.bw_gbps


def test_server_side_prints_the_same_table() -> None:
    result = parse_perftest(derived("ib_send_lat_64_server.txt"))
    assert result.test == "Send Latency Test" and result.lat_typical_us == 305.48


def test_several_sizes_and_megabytes() -> None:
    """-a gives one row per size; without --report_gbits the unit is MB/sec (2^20 B/s)."""
    text = derived("ib_write_bw_65536_client.txt").replace("[Gb/sec]", "[MB/sec]")
    text = text.replace(
        " 65536      5000",
        " 2          5000             1.20               1.10\t\t   1.000000\n 65536      5000",
    )
    result = parse_perftest(text)
    assert [row.size for row in result.bw_rows] == [2, 65536]
    assert result.bw_unit == "MB/sec"
    assert result.bw_gbps == pytest.approx(0.11 * 8 * 2**20 / 1e9)


# ---- rejection ----


def test_real_no_device_output_is_a_parse_error() -> None:
    """Captured on the dev host (no RDMA device): no table, so no result."""
    assert (ROOT / "no_device.txt.origin").is_file()
    text = (ROOT / "no_device.txt").read_text()
    with pytest.raises(ParseError, match="no result table") as caught:
        parse_perftest(text)
    assert "Unable to find the Infiniband/RoCE device" in str(caught.value)


def _cut_after(text: str, marker: str) -> str:
    return text[: text.index(marker) + len(marker)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: _cut_after(t, "MsgRate[Mpps]\n"), "not closed by a dashed line: output truncated"),
        (lambda t: _cut_after(t, "MsgRate[Mpps]\n") + "-" * 87 + "\n", "has a header but no rows"),
        (lambda t: t.replace("0.12               0.11", "0.00               0.00"), "size 65536 BW average is 0"),
        (lambda t: t.replace("0.000210", "0.0x0210"), "garbled result row"),
        (lambda t: t.replace("[Gb/sec]", "[furlongs]"), "unknown bandwidth unit 'furlongs'"),
        (lambda t: _cut_after(t, "Data ex. method : Ethernet\n"), "no result table"),
    ],
    ids=["truncated", "no-rows", "zero-bw", "garbled", "unit", "cut-before-table"],
)
def test_truncated_zero_or_garbled_tables_are_rejected(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parse_perftest(edit(derived("ib_write_bw_65536_client.txt")))


def test_latency_row_with_zero_typical_is_rejected() -> None:
    text = derived("ib_write_lat_2_client.txt").replace("271.62", "0.00  ")
    with pytest.raises(ParseError, match="size 2 t_typical is 0: nothing was measured"):
        parse_perftest(text)


def test_duration_mode_latency_is_refused() -> None:
    text = derived("ib_write_lat_2_client.txt")
    header = next(line for line in text.splitlines() if "#bytes" in line)
    row = next(line for line in text.splitlines() if line.startswith(" 2 "))
    text = text.replace(header, " #bytes        #iterations       t_avg[usec]    tps average").replace(
        row, " 2             1000            288.47         1733.50"
    )
    with pytest.raises(ParseError, match="duration-mode latency"):
        parse_perftest(text)


# ---- --out_json (not JSON in 4.5-0.17) ----


def test_out_json_is_not_json_but_is_read() -> None:
    text = derived("ib_write_bw_65536.out_json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    sections = read_perftest_json(text)
    assert sections["test_info"]["Device"] == "rxe0"  # quoted in the file
    assert sections["test_info"]["TX_depth"] == 128  # "TX_depth : 128," (space before the colon)
    assert sections["results"]["BW_average"] == 0.11


def test_out_json_bw() -> None:
    result = parse_perftest_json(derived("ib_write_bw_65536.out_json"))
    assert result.test == "RDMA_Write_BW_Test" and result.bw_unit == "Gb/sec"
    assert result.bw_rows[0].size == 65536 and result.bw_gbps == 0.11 and result.bw_rows[0].bw_peak == 0.12


def test_out_json_lat() -> None:
    result = parse_perftest_json(derived("ib_write_lat_2.out_json"))
    assert result.test == "RDMA_Write_Latency_Test"
    assert (result.lat_typical_us, result.lat_p99_us) == (271.62, 771.20)
    assert result.lat_rows[0].p999_us == 2890.51


def test_out_json_standard_json_of_newer_perftest_is_read_too() -> None:
    """perftest PR #239 made the file real JSON; the same reader accepts it."""
    data = {
        "test_info": {"test": "RDMA_Write_BW_Test", "Device": "mlx5_0"},
        "results": {"MsgSize": 65536, "n_iterations": 5000, "BW_peak": 0.0, "BW_average": 92.4, "MsgRate": 0.176},
    }
    result = parse_perftest_json(json.dumps(data))
    assert result.bw_gbps == 92.4 and result.bw_rows[0].bw_peak == 0.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("results: {", "result: {"), "sections test_info and results are needed"),
        (lambda t: t.rsplit("}", 1)[0], "no closing brace: the file is truncated"),
        (lambda t: t.replace("BW_average: 0.11,", "BW_average: 0.00,"), "BW_average is 0"),
        (lambda t: t.replace("MsgRate: 0.000210,", ""), "results has no MsgRate"),
        (lambda t: t.replace("Mtu: 1024,", "Mtu 1024"), r"line \d+ is not 'key: value'"),
        (lambda t: "", "no closing brace"),
        (lambda t: t + "trailing: 1,\n", "text after the closing brace"),
    ],
    ids=["no-results", "truncated", "zero", "missing", "garbled", "empty", "trailer"],
)
def test_out_json_rejections(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parse_perftest_json(edit(derived("ib_write_bw_65536.out_json")))


# ---- command lines ----


def test_commands_always_pass_F_and_gbits_for_bandwidth() -> None:
    server = perftest_command("ib_write_bw", device="rxe0", gid_index=1, port=18601, size=65536, iterations=1000)
    assert server == ["ib_write_bw", "-d", "rxe0", "-x", "1", "-F", "-p", "18601", "--report_gbits", "-s", "65536",
                      "-n", "1000"]  # fmt: skip
    client = perftest_command(
        "ib_write_lat",
        device="rxe0",
        gid_index=1,
        port=18601,
        size=2,
        json_file="/tmp/x.json",
        server_address="10.0.0.1",
    )
    assert "--report_gbits" not in client and "-F" in client
    assert client[-3:] == ["--out_json", "--out_json_file=/tmp/x.json", "10.0.0.1"]
    sweep = perftest_command("ib_send_bw", device="rxe0", gid_index=3, port=1, size=None)
    assert "-a" in sweep


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": None, "json_file": "/tmp/x"}, "keeps only the last size"),
        ({"size": 2, "duration_s": 5, "test": "ib_write_lat"}, "latency tests run by iterations"),
        ({"size": 2, "test": "ib_atomic_bw"}, "is not one of"),
    ],
)
def test_command_misuse_is_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"test": "ib_write_bw", "device": "rxe0", "gid_index": 1, "port": 1}
    args.update(kwargs)
    test = str(args.pop("test"))
    with pytest.raises(ValueError, match=message):
        perftest_command(test, **args)  # type: ignore[arg-type]


# ---- real captures from the emulated lab (rxe between the two guests) ----


def lab(name: str) -> str:
    """A lab capture: lab/<name>, or releases/<name> (another release's perftest on the lab's rxe)."""
    path = ROOT / name if name.startswith("releases/") else LAB / name
    assert path.with_name(f"{path.name}.origin").is_file(), f"{name} has no .origin file"
    return path.read_text()


def _iterations(name: str) -> int:
    return 200 if name.startswith("releases/") else 1000


@pytest.mark.parametrize(
    ("name", "test", "size", "peak", "avg", "rate"),
    [
        ("ib_write_bw_65536_client.txt", "RDMA_Write BW Test", 65536, 0.081763, 0.066541, 0.000127),
        ("ib_write_bw_65536_server.txt", "RDMA_Write BW Test", 65536, 0.081763, 0.066541, 0.000127),
        ("ib_write_bw_65536_json_client.txt", "RDMA_Write BW Test", 65536, 0.057895, 0.057895, 0.000110),
        ("ib_read_bw_65536_mtu4096_client.txt", "RDMA_Read BW Test", 65536, 0.067452, 0.061793, 0.000118),
        ("ib_send_bw_4096_client.txt", "Send BW Test", 4096, 0.040646, 0.028546, 0.000871),
        ("ib_send_bw_4096_server.txt", "Send BW Test", 4096, 0.0, 0.029299, 0.000894),  # receiver: no peak
        # perftest 4.4 (Debian 11) and 25.01 (Debian 13) with fabqual's lines: 2 or 6 decimals, Gb/s
        ("releases/v4.4_ib_write_bw_65536_client.txt", "RDMA_Write BW Test", 65536, 0.37, 0.36, 0.000683),
        ("releases/v4.4_ib_send_bw_4096_client.txt", "Send BW Test", 4096, 0.381762, 0.099257, 0.003029),
        ("releases/v4.4_ib_read_bw_65536_client.txt", "RDMA_Read BW Test", 65536, 0.45, 0.17, 0.000320),
        ("releases/v25.01_ib_write_bw_65536_client.txt", "RDMA_Write BW Test", 65536, 0.47, 0.42, 0.000810),
        ("releases/v25.01_ib_send_bw_4096_client.txt", "Send BW Test", 4096, 0.299739, 0.072312, 0.002207),
        ("releases/v25.01_ib_read_bw_65536_client.txt", "RDMA_Read BW Test", 65536, 0.49, 0.26, 0.000505),
    ],
)
def test_lab_bandwidth_tables(name: str, test: str, size: int, peak: float, avg: float, rate: float) -> None:
    result = parse_perftest(lab(name))
    assert result.test == test and result.bw_unit == "Gb/sec" and result.info["Device"] == "rxe0"
    assert len(result.bw_rows) == 1
    row = result.bw_rows[0]
    iterations = _iterations(name)
    assert (row.size, row.iterations, row.bw_peak, row.bw_avg, row.msg_rate_mpps) == (size, iterations, peak, avg, rate)
    assert result.bw_gbps == avg


def test_lab_mtu_warning_is_a_note() -> None:
    result = parse_perftest(lab("ib_read_bw_65536_mtu4096_client.txt"))
    assert result.notes == ("Requested mtu is higher than active mtu", "Changing to active mtu - 3")
    assert result.info["Mtu"] == "1024[B]" and result.info["Outstand reads"] == "128"


@pytest.mark.parametrize(
    ("name", "test", "size", "numbers"),
    [
        ("ib_write_lat_2_client.txt", "RDMA_Write Latency Test", 2,
         (269.94, 4943.64, 310.04, 457.43, 460.24, 2620.97, 4943.64)),
        ("ib_write_lat_2_server.txt", "RDMA_Write Latency Test", 2,
         (254.44, 6033.31, 309.18, 455.13, 458.21, 2585.10, 6033.31)),
        ("ib_send_lat_64_client.txt", "Send Latency Test", 64,
         (307.03, 27875.15, 878.66, 1896.21, 2000.96, 9754.29, 27875.15)),
        ("ib_send_lat_64_server.txt", "Send Latency Test", 64,
         (286.74, 36068.74, 969.42, 1877.82, 1917.09, 8552.17, 36068.74)),
        ("releases/v4.4_ib_write_lat_2_client.txt", "RDMA_Write Latency Test", 2,
         (3700.01, 144439.45, 6157.87, 8999.14, 11117.54, 116436.98, 144439.45)),
        ("releases/v4.4_ib_send_lat_2_client.txt", "Send Latency Test", 2,
         (3417.83, 15909.81, 4993.48, 5961.02, 2399.76, 13986.23, 15909.81)),
        ("releases/v25.01_ib_write_lat_2_client.txt", "RDMA_Write Latency Test", 2,
         (3614.46, 12044.37, 6093.56, 6345.54, 1805.33, 11553.41, 12044.37)),
        ("releases/v25.01_ib_send_lat_2_client.txt", "Send Latency Test", 2,
         (3787.90, 11427.20, 6237.44, 6232.61, 1708.90, 10496.89, 11427.20)),
    ],
)  # fmt: skip
def test_lab_latency_tables(name: str, test: str, size: int, numbers: tuple[float, ...]) -> None:
    result = parse_perftest(lab(name))
    assert result.test == test
    row = result.lat_rows[0]
    assert (row.size, row.iterations) == (size, _iterations(name))
    assert (row.t_min_us, row.t_max_us, row.t_typical_us, row.t_avg_us, row.t_stdev_us, row.p99_us, row.p999_us) == (
        numbers
    )
    assert (result.lat_typical_us, result.lat_p99_us) == (numbers[2], numbers[5])


def test_lab_out_json_files_are_not_json_and_match_the_table() -> None:
    """The real 4.5-0.17 --out_json files: unquoted, trailing commas; same numbers as stdout."""
    for name in ("ib_write_bw_65536_json.out_json", "ib_send_bw_4096.out_json", "ib_write_lat_2_json.out_json"):
        with pytest.raises(json.JSONDecodeError):
            json.loads(lab(name))
    bw = parse_perftest_json(lab("ib_write_bw_65536_json.out_json"))
    assert bw.test == "RDMA_Write_BW_Test" and bw.info["Device"] == "rxe0" and bw.info["GID_index"] == "1"
    assert bw.bw_rows[0] == parse_perftest(lab("ib_write_bw_65536_json_client.txt")).bw_rows[0]
    send = parse_perftest_json(lab("ib_send_bw_4096.out_json"))
    assert send.test == "Send_BW_Test" and send.bw_gbps == 0.028546 and send.info["CQ_Moderation"] == "100"
    assert send.bw_rows[0] == parse_perftest(lab("ib_send_bw_4096_client.txt")).bw_rows[0]
    latency = parse_perftest_json(lab("ib_write_lat_2_json.out_json"))
    assert latency.test == "RDMA_Write_Latency_Test"
    assert latency.lat_rows[0] == parse_perftest(lab("ib_write_lat_2_json_client.txt")).lat_rows[0]
    assert (latency.lat_typical_us, latency.lat_p99_us) == (357.30, 6369.32)


def test_real_clock_calibration_failure_is_named_not_garbled() -> None:
    """perftest printed inf latencies after its clock calibration failed (a loaded host): the error says
    so, and it is the kind run_perftest runs again rather than a garbled table."""
    with pytest.raises(
        ClockCalibrationError, match=r"could not measure the CPU clock \(correlation r\^2 0.894595 < 0.9\)"
    ):
        parse_perftest((LAB / "ib_send_lat_2_calibration_failed_client.txt").read_text())


# ---- the runner, with the real perftest of this machine (which has no RDMA device) ----


@pytest.mark.skipif(shutil.which("ib_write_bw") is None, reason="perftest is not installed on this machine")
@pytest.mark.skipif(Path("/sys/class/infiniband").is_dir(), reason="this machine has RDMA devices: no failure to see")
def test_run_perftest_reports_a_server_that_cannot_start_and_cleans_up() -> None:
    """The server side fails for real (no device): a LabError with perftest's own words,
    and neither a process nor a log file is left behind."""
    executor = LocalExecutor()
    exited = r"(?s)port 18599 \(pid \d+\) exited before listening on TCP port 18599; the last lines "
    with pytest.raises(LabError, match=exited + ".*Unable to find the Infiniband/RoCE"):
        run_perftest(
            executor, executor, test="ib_write_bw", device="rxe0", gid_index=1, server_address="127.0.0.1",
            size=65536, iterations=10, port=18599,
        )  # fmt: skip
    assert not list(Path("/tmp").glob("fabqual-perftest-18599*"))
    assert executor.run("pgrep -f 'ib_write_b[w] -d rxe0 -x 1 -F -p 18599' || true").stdout.strip() == ""


# ---- releases racks run: perftest 4.4 (Debian 11) and 25.01 (Debian 13), captured on the lab's rxe ----

RELEASES = ROOT / "releases"


def release(name: str) -> str:
    assert (RELEASES / f"{name}.origin").is_file(), f"{name} has no .origin file"
    return (RELEASES / name).read_text()


def test_perftest_25_out_json_is_real_json() -> None:
    """perftest 25.01 writes real JSON (4.5-0.17 did not); both read the same way."""
    for name in ("v25.01_ib_write_bw_65536.out_json", "v25.01_ib_write_lat_2.out_json"):
        json.loads(release(name))
    bw = parse_perftest_json(release("v25.01_ib_write_bw_65536.out_json"))
    assert bw.test == "RDMA_Write_BW_Test" and bw.info["GID_index"] == "1"
    assert bw.bw_rows[0] == BwRow(65536, 200, 0.46, 0.14, 0.000258) and bw.bw_gbps == 0.14
    lat = parse_perftest_json(release("v25.01_ib_write_lat_2.out_json"))
    assert lat.lat_rows[0] == LatRow(2, 200, 3393.15, 27995.30, 6903.66, 7964.40, 3945.82, 25887.87, 27995.30)


def _drop_column(text: str, header: str, index: int) -> str:
    """The table as a release without that column prints it (header word and each row's cell removed)."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "#bytes" in line)
    lines[at] = lines[at].replace(header, "")
    row = lines[at + 1].split()
    lines[at + 1] = " " + "   ".join(row[:index] + row[index + 1 :]) + "\n"
    return "".join(lines)


def test_a_table_without_msgrate_reads_msgrate_as_unknown() -> None:
    """perftest 1.x had no MsgRate column: the rate is None (not 0) and the bandwidth still counts."""
    text = _drop_column(release("v4.4_ib_write_bw_65536_client.txt"), "MsgRate[Mpps]", 4)
    result = parse_perftest(text)
    assert result.bw_rows[0] == BwRow(65536, 200, 0.37, 0.36, None)
    assert result.bw_gbps == 0.36


def test_a_latency_table_without_percentiles_makes_p99_unknown_and_refuses_to_judge_it() -> None:
    """Before perftest 4 a latency row had t_min t_max t_typical only: typical is known; asking for the
    p99 a threshold needs is an error naming test, size and column, never a pass."""
    text = release("v4.4_ib_write_lat_2_client.txt")
    header = next(line for line in text.splitlines() if "#bytes" in line)
    row = next(line for line in text.splitlines() if line.startswith(" 2 "))
    old = text.replace(header, " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]").replace(
        row, " 2       200          3700.01        144439.45      6157.87"
    )
    result = parse_perftest(old)
    assert result.lat_rows[0] == LatRow(2, 200, 3700.01, 144439.45, 6157.87, None, None, None, None)
    assert result.lat_typical_us == 6157.87
    with pytest.raises(ParseError, match=r"RDMA_Write Latency Test size 2: 99% percentile is unknown"):
        _ = result.lat_p99_us
    with pytest.raises(ParseError, match=r"size 2: t_avg is unknown"):
        _ = result.lat_avg_us


@pytest.mark.parametrize("cell", ["nan", "-nan", "inf"])
def test_a_nan_cell_makes_that_value_unknown_not_the_sweep(cell: str) -> None:
    """One nan/-nan/inf cell in a multi-size sweep: that value is None, every other value stays read,
    and reading the unknown one for a threshold fails naming it."""
    text = release("v25.01_ib_write_bw_65536_client.txt")
    row = next(line for line in text.splitlines() if line.startswith(" 65536"))
    sweep = text.replace(row, f"{row}\n 131072     200              0.47               {cell}   \t\t     0.000400")
    result = parse_perftest(sweep)
    assert [r.size for r in result.bw_rows] == [65536, 131072]
    assert result.bw_rows[0] == BwRow(65536, 200, 0.47, 0.42, 0.000810)
    assert result.bw_rows[1] == BwRow(131072, 200, 0.47, None, 0.000400)
    with pytest.raises(ParseError, match=r"RDMA_Write BW Test size 131072: BW average is unknown"):
        _ = result.bw_gbps


def test_a_nan_percentile_leaves_typical_known() -> None:
    text = release("v25.01_ib_send_lat_2_client.txt").replace("10496.89", "-nan    ")
    result = parse_perftest(text)
    assert result.lat_rows[0].p99_us is None and result.lat_typical_us == 6237.44
    with pytest.raises(ParseError, match=r"Send Latency Test size 2: 99% percentile is unknown"):
        _ = result.lat_p99_us


def test_a_nan_in_the_out_json_file_is_unknown_too() -> None:
    text = release("v25.01_ib_write_lat_2.out_json").replace('"percentile_99": 25887.87', '"percentile_99": -nan')
    result = parse_perftest_json(text)
    assert result.lat_rows[0].p99_us is None and result.lat_typical_us == 6903.66
    with pytest.raises(ParseError, match="99% percentile is unknown"):
        _ = result.lat_p99_us


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (" 65536      200              0.47", "has 3 columns, expected 4 or 5"),
        (" 65536      200              0.47               -0.42   \t\t     0.000810", "BW average is -0.42"),
    ],
)
def test_rows_too_short_or_negative_are_still_errors(row: str, message: str) -> None:
    """Unknown is only nan/inf or a column the release lacks: a cut row or a negative number is an error."""
    text = release("v25.01_ib_write_bw_65536_client.txt")
    original = next(line for line in text.splitlines() if line.startswith(" 65536"))
    with pytest.raises(ParseError, match=message):
        parse_perftest(text.replace(original, row))
