"""fio JSON parsing on real reports, and run_fio against the real fio here.

The samples under fixtures/outputs/fio/ were captured with fabqual's own command
lines from fio 3.25 (Debian 11), 3.33 (Debian 12) and 3.39 (Debian 13), or
copied from a published fio 2.1.11 report; each ``.origin`` file says how.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabqual.errors import ParseError
from fabqual.executors.local import LocalExecutor
from fabqual.tools.fio import fio_command, parse_fio, run_fio

SAMPLES = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "fio"


def sample(name: str) -> str:
    assert (SAMPLES / f"{name}.origin").is_file(), f"{name} has no .origin file"
    return (SAMPLES / name).read_text()


def test_randread_one_job() -> None:
    """A 4k randread report gives iops, bytes/s and clat percentiles converted from ns to µs."""
    result = parse_fio(sample("randread_4k_qd16.json"))
    assert result.version == "fio-3.33"
    assert result.write is None
    read = result.read
    assert read is not None
    assert read.iops == pytest.approx(58688.579017)
    assert read.bw_bytes == 240388419
    assert read.bw_mbps == pytest.approx(240.388419)
    assert read.total_ios == 176770
    assert read.clat_p50_us == pytest.approx(181.248)
    assert read.clat_p99_us == pytest.approx(716.8)
    assert read.clat_p999_us == pytest.approx(24510.464)
    assert result.direction("randread") is read
    assert result.notes == ()


def test_verified_write_two_jobs_are_summed_and_the_warning_kept() -> None:
    """Two jobs without group_reporting: rates add up, percentiles take the worse job,
    the warning fio printed before the JSON is kept as a note, verify reads show as read."""
    result = parse_fio(sample("write_128k_verify_2jobs.json"))
    assert [job.name for job in result.jobs] == ["verify", "verify"]
    assert result.notes[0].startswith("fio: multiple writers may overwrite blocks")
    write = result.direction("write")
    assert write is result.write
    assert write.iops == pytest.approx(2752.688172 + 2723.404255)
    assert write.total_ios == 512
    per_job = [job.write for job in result.jobs if job.write is not None]
    assert write.clat_p99_us == max(part.clat_p99_us for part in per_job)
    assert result.read is not None  # the verify phase
    assert result.read.iops == pytest.approx(2 * 2306.306306)


def test_mixed_group_reporting_has_both_directions() -> None:
    result = parse_fio(sample("randrw_4k_qd32_group.json"))
    assert len(result.jobs) == 1
    assert result.read is not None and result.write is not None
    assert result.read.iops == pytest.approx(38995.034757)
    assert result.write.iops == pytest.approx(39101.787488)
    assert result.write.clat_p99_us == pytest.approx(4685.824)


@pytest.mark.parametrize(
    ("name", "iops", "bw_bytes", "total_ios", "p50_us", "p99_us", "p999_us"),
    [
        ("v3.25_randread_4k_qd16.json", 94384.205265, 386597704, 283247, 130.560, 1433.600, 3751.936),
        ("v3.39_randread_4k_qd16.json", 89748.417194, 367609516, 269335, 134.144, 1662.976, 3850.240),
    ],
)
def test_randread_from_older_and_newer_releases(
    name: str, iops: float, bw_bytes: int, total_ios: int, p50_us: float, p99_us: float, p999_us: float
) -> None:
    """fabqual's randread line gives the same fields, in the same units, on fio 3.25 and 3.39."""
    result = parse_fio(sample(name))
    read = result.direction("randread")
    assert (read.iops, read.bw_bytes, read.total_ios) == (pytest.approx(iops), bw_bytes, total_ios)
    assert (read.clat_p50_us, read.clat_p99_us, read.clat_p999_us) == (
        pytest.approx(p50_us),
        pytest.approx(p99_us),
        pytest.approx(p999_us),
    )
    assert result.write is None and result.notes == ()


@pytest.mark.parametrize(
    ("name", "write_iops", "verify_iops", "write_p99_us"),
    [
        ("v3.25_write_128k_verify_2jobs.combined", 13473.684211, 15058.823529, 3948.544),
        ("v3.39_write_128k_verify_2jobs.combined", 14628.571429, 14222.222222, 4423.680),
    ],
)
def test_verified_write_group_reporting_from_older_and_newer_releases(
    name: str, write_iops: float, verify_iops: float, write_p99_us: float
) -> None:
    """run_fio's verified 2-job write: one group entry, the warning before the JSON kept, verify reads as read."""
    result = parse_fio(sample(name))
    assert len(result.jobs) == 1 and result.jobs[0].rw == "write"
    assert result.notes[0].startswith("fio: multiple writers may overwrite blocks")
    write = result.direction("write")
    assert write.iops == pytest.approx(write_iops) and write.io_bytes == 64 * 2**20 and write.total_ios == 512
    assert write.clat_p99_us == pytest.approx(write_p99_us)
    assert result.read is not None and result.read.iops == pytest.approx(verify_iops)


def test_fio2_units_are_converted_and_missing_counts_stay_unknown() -> None:
    """fio 2.1.11: bw KiB/s and io_bytes KiB become bytes, clat stays µs; total_ios (absent) is None, not 0,
    and the workload is read from the direction that did I/O (no "job options" in 2.x)."""
    result = parse_fio(sample("v2.1.11_randread_4jobs.json"))
    assert result.version == "fio-2.1.11"
    assert [job.rw for job in result.jobs] == ["read"] * 4
    first = result.jobs[0].read
    assert first is not None
    assert first.bw_bytes == 21 * 1024 and first.io_bytes == 44920 * 1024
    assert first.total_ios is None
    assert (first.clat_mean_us, first.clat_p50_us, first.clat_p99_us, first.clat_p999_us) == (255.34, 243, 506, 812)
    total = result.direction("randread")
    assert total.iops == 20 and total.bw_bytes == 4 * 21 * 1024 and total.total_ios is None
    assert total.io_bytes == (44920 + 44992 + 45024 + 44820) * 1024
    assert total.clat_p999_us == 972  # the worst job
    weights = (44920, 44992, 45024, 44820)  # by bytes, since fio 2.1 gives no I/O counts
    means = (255.34, 254.65, 254.25, 255.2)
    assert total.clat_mean_us == pytest.approx(sum(w * m for w, m in zip(weights, means, strict=True)) / sum(weights))
    assert result.write is None


def test_client_server_report_reads_client_stats() -> None:
    """fio --client puts the job under client_stats; it parses like a local job."""
    result = parse_fio(sample("v3.25_client_randread_4k_qd16.json"))
    read = result.direction("randread")
    assert [job.name for job in result.jobs] == ["fabqual"]
    assert read.iops == pytest.approx(97100.2999) and read.bw_bytes == 397722828 and read.total_ios == 291398
    assert read.clat_p99_us == pytest.approx(325.632)


def test_all_clients_entry_is_the_total_not_one_more_job() -> None:
    """With two servers fio adds 'All clients' (their sum): the total is that entry, the jobs are the two servers."""
    result = parse_fio(sample("v3.39_two_clients_randread_4k_qd16.json"))
    assert [job.name for job in result.jobs] == ["fabqual", "fabqual"]
    read = result.direction("randread")
    assert read.iops == pytest.approx(127187.937354) and read.total_ios == 381691
    assert read.bw_bytes == 520961791 == 265730900 + 255230891
    assert read.clat_p99_us == pytest.approx(1449.984)  # fio's own merged percentile, not the worse server's


def test_fio2_report_with_a_zero_kib_rate_is_rejected() -> None:
    """A fio 2.x direction that moved bytes but reports bw 0 is a parse error naming the 2.x unit."""
    data = json.loads(sample("v2.1.11_randread_4jobs.json"))
    data["jobs"][1]["read"]["bw"] = 0
    with pytest.raises(ParseError, match=r"job 'random-read' read bw \(KiB/s, fio 2.x\) is 0: nothing was measured"):
        parse_fio(json.dumps(data))


def test_report_with_only_the_all_clients_summary_is_rejected() -> None:
    data = json.loads(sample("v3.39_two_clients_randread_4k_qd16.json"))
    data["client_stats"] = [entry for entry in data["client_stats"] if entry["jobname"] == "All clients"]
    with pytest.raises(ParseError, match="only the 'All clients' summary"):
        parse_fio(json.dumps(data))


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("io_error_unaligned.combined", "fio: io_u error on file /tmp/fabqual-fio.img: Invalid argument"),
        ("missing_size.combined", "missing: you need to specify size="),
    ],
)
def test_failed_job_is_an_error_naming_job_errno_and_fio_lines(name: str, line: str) -> None:
    """A job with "error": 22 is never a result; the message names it and shows fio's lines."""
    with pytest.raises(ParseError, match=r"job '\w+' failed with error 22 \(Invalid argument\)") as caught:
        parse_fio(sample(name))
    assert line in str(caught.value)


def test_truncated_report_is_rejected() -> None:
    text = sample("randread_4k_qd16.json")
    with pytest.raises(ParseError, match="truncated or malformed"):
        parse_fio(text[: len(text) // 2])


@pytest.mark.parametrize("text", ["", "fio: engine libaio not loadable\n", "garbage {not json}\n"])
def test_output_without_a_report_is_rejected(text: str) -> None:
    with pytest.raises(ParseError, match="no JSON report found"):
        parse_fio(text)


def _edited(edit: str) -> str:
    data = json.loads(sample("randread_4k_qd16.json"))
    read = data["jobs"][0]["read"]
    if edit == "zero-iops":
        read["iops"] = 0
    elif edit == "nan-bw":
        read["bw_bytes"] = float("nan")
    elif edit == "no-io":
        read["total_ios"] = 0
    elif edit == "no-percentiles":
        del read["clat_ns"]["percentile"]
    elif edit == "no-jobs":
        data["jobs"] = []
    return json.dumps(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("zero-iops", r"job 'randread' read iops is 0: nothing was measured"),
        ("nan-bw", r"bw_bytes is nan, not a finite number"),
        ("no-io", r"job 'randread' \(rw=randread\) did no read I/O"),
        ("no-percentiles", r"no clat percentiles"),
        ("no-jobs", r"the report has no jobs \(neither 'jobs' nor 'client_stats'\)"),
    ],
)
def test_missing_zero_or_nan_numbers_are_errors(edit: str, message: str) -> None:
    """avocado's lesson: a check must fail, not pass, when the number is not really there."""
    with pytest.raises(ParseError, match=message):
        parse_fio(_edited(edit))


def test_command_line_reads_are_time_based_verified_writes_are_not() -> None:
    read = fio_command(filename="/dev/nvme0n1", rw="randread", bs="4k", iodepth=32, runtime_s=30)
    assert "--time_based" in read and "--output-format=json" in read and "--ioengine=libaio" in read
    assert "--direct=1" in read and "--iodepth=32" in read
    write = fio_command(
        filename="/dev/nvme0n1", rw="write", bs="128k", iodepth=1, runtime_s=30, size="64M", verify="crc32c", numjobs=2
    )
    assert "--time_based" not in write
    assert "--verify=crc32c" in write and "--verify_fatal=1" in write and "--offset_increment=64M" in write
    assert "--group_reporting=1" in write
    with pytest.raises(ValueError, match="needs size="):
        fio_command(filename="/x", rw="write", bs="4k", iodepth=1, runtime_s=1, verify="crc32c")
    with pytest.raises(ValueError, match="needs a write workload"):
        fio_command(filename="/x", rw="read", bs="4k", iodepth=1, runtime_s=1, size="1M", verify="crc32c")


needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed on this machine")


@needs_fio
def test_run_fio_on_a_real_file(tmp_path: Path) -> None:
    """run_fio runs the real fio through the local executor and returns real numbers."""
    target = tmp_path / "disk.img"
    executor = LocalExecutor()
    written = run_fio(
        executor, filename=str(target), rw="write", bs="128k", iodepth=4, runtime_s=5, size="8M", verify="crc32c"
    )
    assert written.direction("write").io_bytes == 8 * 2**20
    assert written.read is not None and written.read.io_bytes == 8 * 2**20  # every block read back
    read = run_fio(executor, filename=str(target), rw="randread", bs="4k", iodepth=8, runtime_s=1, size="8M")
    assert read.direction("randread").iops > 0
    assert not list(tmp_path.glob("*verify.state")) and not list(Path.cwd().glob("*verify.state"))


@needs_fio
def test_run_fio_failure_is_a_parse_error_with_fios_message(tmp_path: Path) -> None:
    """bs=1000 with O_DIRECT fails every I/O: run_fio raises, naming the job and fio's error."""
    with pytest.raises(ParseError, match=r"failed with error 22") as caught:
        run_fio(
            LocalExecutor(), filename=str(tmp_path / "d.img"), rw="read", bs="1000", iodepth=1, runtime_s=1, size="1M"
        )
    assert "io_u error" in str(caught.value)
