"""Thresholds: the shipped profiles cover the whole matrix, lookups pick the most
specific entry, line-rate fractions (doubled when bidirectional), bad files fail
at load naming the file and key, and the sysfs line-rate parsers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from fabqual.errors import ParseError, ThresholdError, TopologyError
from fabqual.thresholds import (
    METRICS,
    default_directory,
    fc_line_rate_gbps,
    ib_line_rate_gbps,
    load_thresholds,
    net_line_rate_gbps,
)

SYSFS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "sysfs"

FIO_MATRIX = [
    {"rw": rw, "bs": bs, "qd": qd}
    for rw in ("read", "write", "randread", "randwrite")
    for bs in ("4k", "128k", "1M")
    for qd in ("1", "32")
]
PERFTEST_SIZES = [{"size": str(2**n)} for n in range(1, 24)]
MTUS = [{"mtu": "1500"}, {"mtu": "9000"}]


@pytest.mark.parametrize("profile", ["emulated", "hardware"])
def test_shipped_profiles_cover_every_metric_of_every_link(profile: str) -> None:
    """Every metric a test can check resolves for every context of the matrix."""
    thresholds = load_thresholds(profile)
    line = {"fc_nvme": 12.8, "nvmet_rdma": 25.0, "pvrdma": 25.0, "ipofc": 6.4}
    wanted = {
        "fc_nvme": (("iops", "bw_mbps", "clat_p99_us"), FIO_MATRIX),
        "nvmet_rdma": (("iops", "bw_mbps", "clat_p99_us"), FIO_MATRIX),
        "pvrdma": (("bw_gbps", "lat_typical_us", "lat_p99_us"), PERFTEST_SIZES),
        "ipofc": (
            ("loss_pct", "rtt_avg_ms", "rtt_max_ms", "tcp_mbps", "udp_mbps", "udp_loss_pct", "udp_jitter_ms"),
            MTUS,
        ),
    }
    checked = 0
    for link, (metrics, contexts) in wanted.items():
        for metric in metrics:
            for context in contexts:
                bound = thresholds.bound(link, metric, context, line_rate=line[link])
                assert bound.unit == METRICS[metric][0]
                assert bound.comparison == METRICS[metric][1]
                assert bound.source.startswith(f"{profile}.yaml: links.{link}.{metric}[")
                checked += 1
    for metric in ("bw_gbps", "lat_typical_us", "lat_p99_us"):
        for context in PERFTEST_SIZES:
            thresholds.bound("nvmet_rdma", metric, context, line_rate=25.0)
    assert checked > 100


def test_shipped_profiles_are_package_data_and_the_checkout_links_them() -> None:
    repo = Path(__file__).resolve().parents[3]
    assert default_directory() == repo / "src" / "fabqual" / "data" / "thresholds"
    assert (repo / "topologies" / "thresholds").resolve() == default_directory()
    assert {p.stem for p in default_directory().glob("*.yaml")} >= {"emulated", "hardware"}


def test_the_wheel_ships_the_profiles(tmp_path: Path) -> None:
    """Installed elsewhere as a plugin, fabqual still finds its profiles: they are in the wheel."""
    repo = Path(__file__).resolve().parents[3]
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(repo)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = tmp_path.glob("fabqual-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"fabqual/data/thresholds/emulated.yaml", "fabqual/data/thresholds/hardware.yaml"} <= names


def test_a_profile_may_be_a_file_of_the_racks_own(tmp_path: Path) -> None:
    own = tmp_path / "our-rack.yaml"
    own.write_text(
        (default_directory() / "hardware.yaml").read_text().replace("profile: hardware", "profile: our-rack")
    )
    assert load_thresholds(str(own)).bound("fc_nvme", "iops", {"rw": "read", "bs": "4k", "qd": "32"})
    with pytest.raises(
        TopologyError, match=r"no thresholds profile 'nonesuch'; available: emulated, hardware, or the path"
    ):
        load_thresholds("nonesuch")


def test_emulated_numbers_follow_the_measurements() -> None:
    """The emulated floors are fractions of the measured numbers (docs/emulated-lab.md), not hardware figures."""
    emulated = load_thresholds("emulated")
    bound = emulated.bound("nvmet_rdma", "bw_gbps", {"size": "65536", "test": "ib_write_bw"}, line_rate=25.0)
    assert bound.threshold == pytest.approx(0.015) and "0.058-0.067 Gb/s" in bound.source
    assert "0.0006 x 25 Gb/s line rate" in bound.source  # the lab's rxe ports report 25 Gb/s
    assert emulated.bound("fc_nvme", "iops", {"rw": "randread", "bs": "4k", "qd": "32"}).threshold == 600
    lat = emulated.bound("nvmet_rdma", "lat_typical_us", {"size": "2"})
    assert (lat.threshold, lat.comparison) == (12000, "<=")
    assert emulated.bound("ipofc", "loss_pct", {"mtu": "1500"}).threshold == 0


def write_profile(folder: Path, body: str, name: str = "lab") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


SELECTORS = """\
    version: 1
    profile: lab
    links:
      fc_nvme:
        iops:
          - min: 10
            unit: IOPS
            note: catch-all
          - when: {bs: 4k}
            min: 20
            unit: IOPS
            note: any 4k
          - when: {bs: 4k, qd: 32}
            min: 40
            unit: IOPS
            note: 4k at QD32
          - when: {rw: [read, randread], bs: 4k, qd: 32}
            min: 80
            unit: IOPS
            note: 4k reads at QD32
          - when: {qd: 1}
            min: 5
            unit: IOPS
            note: any QD1
"""


@pytest.mark.parametrize(
    ("context", "threshold", "note"),
    [
        ({"rw": "write", "bs": "128k", "qd": "32"}, 10, "catch-all"),
        ({"rw": "write", "bs": "4K", "qd": "16"}, 20, "any 4k"),
        ({"rw": "write", "bs": "4k", "qd": "32"}, 40, "4k at QD32"),
        ({"rw": "randread", "bs": "4k", "qd": "32"}, 80, "4k reads at QD32"),
        ({"rw": "write", "bs": "1m", "qd": "1"}, 5, "any QD1"),
    ],
)
def test_most_specific_entry_wins(tmp_path: Path, context: dict[str, str], threshold: float, note: str) -> None:
    write_profile(tmp_path, SELECTORS)
    bound = load_thresholds("lab", tmp_path).bound("fc_nvme", "iops", context)
    assert bound.threshold == threshold and bound.comparison == ">=" and bound.unit == "IOPS"
    assert bound.source.endswith(f": {note}")


def test_equally_specific_matches_are_an_ambiguity(tmp_path: Path) -> None:
    write_profile(tmp_path, SELECTORS)
    with pytest.raises(ThresholdError, match=r"ambiguous, lab.yaml: links.fc_nvme.iops\[1\], .*iops\[4\] match"):
        load_thresholds("lab", tmp_path).bound("fc_nvme", "iops", {"rw": "read", "bs": "4k", "qd": "1"})


def test_missing_metric_or_link_names_profile_link_metric_and_context(tmp_path: Path) -> None:
    write_profile(tmp_path, SELECTORS)
    thresholds = load_thresholds("lab", tmp_path)
    with pytest.raises(ThresholdError, match=r"profile 'lab': fc_nvme bw_mbps rw=read bs=4k: no entry for this metric"):
        thresholds.bound("fc_nvme", "bw_mbps", {"rw": "read", "bs": "4k"})
    with pytest.raises(ThresholdError, match=r"nvmet_rdma iops \(no context\): no entry"):
        thresholds.bound("nvmet_rdma", "iops", {})


LINE_RATE = """\
    version: 1
    profile: lab
    links:
      nvmet_rdma:
        bw_gbps:
          - min_fraction_of_line_rate: 0.9
            unit: Gb/s
            note: 0.9 of the port
          - when: {size: 2}
            min: 1.5
            min_fraction_of_line_rate: 0.05
            unit: Gb/s
            note: tiny messages
        bw_mbps:
          - min_fraction_of_line_rate: 0.5
            unit: MB/s
            note: half the port
        lat_typical_us:
          - max: 5
            unit: us
            note: small sizes
"""


def test_line_rate_fraction_and_bidirectional_doubling(tmp_path: Path) -> None:
    write_profile(tmp_path, LINE_RATE)
    thresholds = load_thresholds("lab", tmp_path)
    one_way = thresholds.bound("nvmet_rdma", "bw_gbps", {"size": "65536"}, line_rate=25.0)
    assert one_way.threshold == pytest.approx(22.5)
    assert "0.9 x 25 Gb/s line rate" in one_way.source
    both = thresholds.bound("nvmet_rdma", "bw_gbps", {"size": "65536", "bidirectional": "true"}, line_rate=25.0)
    assert both.threshold == pytest.approx(45.0) and "x 2 (bidirectional)" in both.source
    # A line rate in Gb/s becomes MB/s for fio: 25 Gb/s = 3125 MB/s.
    assert thresholds.bound("nvmet_rdma", "bw_mbps", {}, line_rate=25.0).threshold == pytest.approx(1562.5)
    # Upper bounds ignore the line rate.
    assert thresholds.bound("nvmet_rdma", "lat_typical_us", {}, line_rate=25.0).threshold == 5


def test_min_and_fraction_take_the_larger_and_min_alone_without_line_rate(tmp_path: Path) -> None:
    write_profile(tmp_path, LINE_RATE)
    thresholds = load_thresholds("lab", tmp_path)
    assert thresholds.bound("nvmet_rdma", "bw_gbps", {"size": "2"}, line_rate=25.0).threshold == 1.5  # > 0.05 x 25
    assert thresholds.bound("nvmet_rdma", "bw_gbps", {"size": "2"}, line_rate=100.0).threshold == 5.0  # < 0.05 x 100
    assert thresholds.bound("nvmet_rdma", "bw_gbps", {"size": "2"}, line_rate=None).threshold == 1.5


@pytest.mark.parametrize("line_rate", [None, 0.0, float("nan")])
def test_fraction_without_a_line_rate_is_a_threshold_error(tmp_path: Path, line_rate: float | None) -> None:
    write_profile(tmp_path, LINE_RATE)
    with pytest.raises(ThresholdError, match=r"0.9 of the line rate, but the line rate is unknown"):
        load_thresholds("lab", tmp_path).bound("nvmet_rdma", "bw_gbps", {"size": "4096"}, line_rate=line_rate)


GOOD_ENTRY = "          - min: 1\n            unit: IOPS\n            note: n\n"


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("version: 2\nprofile: lab\nlinks: {}\n", "version", "is 2; this fabqual reads version 1"),
        ("version: 1\nprofile: other\nlinks: {fc_nvme: {}}\n", "profile", "is 'other' but the file is lab.yaml"),
        ("version: 1\nprofile: lab\nlinks: {}\n", "links", "must map link types"),
        ("version: 1\nprofile: lab\nextra: 1\nlinks: {}\n", "extra", "unknown key"),
        ("version: 1\nprofile: lab\nlinks:\n  fc: {iops: []}\n", "links.fc", "unknown link type"),
        ("version: 1\nprofile: lab\nlinks:\n  fc_nvme: {iopz: [{}]}\n", "links.fc_nvme.iopz", "unknown metric"),
        ("version: 1\nprofile: lab\nlinks:\n  fc_nvme: {iops: []}\n", "links.fc_nvme.iops", "non-empty list"),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n      - {min: 1, unit: MB/s, note: n}\n",
            "links.fc_nvme.iops[0].unit",
            "is 'MB/s'; iops is measured in 'IOPS'",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n      - {min: 1, unit: IOPS}\n",
            "links.fc_nvme.iops[0].note",
            "say where the number comes from",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n      - {min: 0, unit: IOPS, note: n}\n",
            "links.fc_nvme.iops[0].min",
            "a lower bound of 0 lets a run that measured nothing pass",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n      - {max: 9, unit: IOPS, note: n}\n",
            "links.fc_nvme.iops[0]",
            "iops is a lower bound",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    clat_p99_us:\n      - {min: 9, unit: us, note: n}\n",
            "links.fc_nvme.clat_p99_us[0]",
            "clat_p99_us is an upper bound",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n"
            "      - {min_fraction_of_line_rate: 0.5, unit: IOPS, note: n}\n",
            "links.fc_nvme.iops[0].min_fraction_of_line_rate",
            "iops (IOPS) is not a rate",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    bw_mbps:\n"
            "      - {min_fraction_of_line_rate: 1.5, unit: MB/s, note: n}\n",
            "links.fc_nvme.bw_mbps[0].min_fraction_of_line_rate",
            "must be in (0, 1]",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n      - {min: '10', unit: IOPS, note: n}\n",
            "links.fc_nvme.iops[0].min",
            "is '10', not a finite number",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n"
            "      - {min: 1, unit: IOPS, note: n, when: {bs: 4k}}\n"
            "      - {min: 2, unit: IOPS, note: m, when: {bs: 4K}}\n",
            "links.fc_nvme.iops[1].when",
            "the same selectors as links.fc_nvme.iops[0]",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n"
            "      - {min: 1, unit: IOPS, note: n, when: [bs]}\n",
            "links.fc_nvme.iops[0].when",
            "must map context keys",
        ),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n"
            "      - {min: 1, unit: IOPS, note: n, limit: 3}\n",
            "links.fc_nvme.iops[0].limit",
            "unknown key",
        ),
        ("version: 1\nprofile: lab\nlinks:\n  fc_nvme: [\n", "", "not valid YAML at line 5"),
        (
            "version: 1\nprofile: lab\nlinks:\n  fc_nvme:\n    iops:\n      - {min: 1, unit: IOPS, note: n}\n"
            "    iops:\n      - {min: 9, unit: IOPS, note: n}\n",
            "",
            "not valid YAML at line 7, column 5: key 'iops' is given twice in one mapping",
        ),
        ("version: 1\nprofile: lab\nlinks: {min: 1, min: 2}\n", "", "key 'min' is given twice"),
    ],
)
def test_bad_files_name_file_key_and_problem(tmp_path: Path, body: str, key: str, message: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(body)
    with pytest.raises(TopologyError) as caught:
        load_thresholds("lab", tmp_path)
    assert caught.value.source == str(path)
    assert caught.value.key_path == key
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{path}: {key}: " if key else f"{path}: ")


def test_thresholds_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """A profile saved as UTF-16 is refused naming the file and the fix, not with a UnicodeDecodeError."""
    (tmp_path / "lab.yaml").write_bytes("version: 1\n".encode("utf-16"))
    with pytest.raises(TopologyError, match=r"lab.yaml: the file is UTF-16 text, not UTF-8; save it as UTF-8$"):
        load_thresholds("lab", tmp_path)


def test_unknown_profile_lists_the_available_ones(tmp_path: Path) -> None:
    write_profile(tmp_path, SELECTORS)
    with pytest.raises(TopologyError, match=r"no thresholds profile 'rack'; available: lab"):
        load_thresholds("rack", tmp_path)


# ---- line rates from sysfs text ----


def test_real_rxe_rate_and_virtio_speed() -> None:
    """Read in the emulated-lab guest (fixtures/outputs/sysfs/README.md)."""
    assert ib_line_rate_gbps((SYSFS / "rxe0_port1_rate.txt").read_text()) == pytest.approx(2.0)  # 2.5 SDR, 8b/10b
    assert net_line_rate_gbps((SYSFS / "virtio_eth1_speed.txt").read_text()) is None


@pytest.mark.parametrize(
    ("text", "gbps"),
    [("16 Gbit\n", 12.8), ("32 Gbit\n", 25.6), ("8 Gbit", 6.4), ("unknown\n", None), ("Not Negotiated\n", None)],
)
def test_fc_speed(text: str, gbps: float | None) -> None:
    assert fc_line_rate_gbps(text) == (pytest.approx(gbps) if gbps is not None else None)


@pytest.mark.parametrize(
    ("text", "gbps"),
    [
        ("25 Gb/sec (1X EDR)\n", 25.0),
        ("100 Gb/sec (4X EDR)\n", 100.0),
        ("40 Gb/sec (4X QDR)\n", 32.0),
        ("56 Gb/sec (4X FDR)\n", 56.0),
        ("0 Gb/sec (1X SDR)\n", None),
    ],
)
def test_ib_rate(text: str, gbps: float | None) -> None:
    assert ib_line_rate_gbps(text) == (pytest.approx(gbps) if gbps is not None else None)


@pytest.mark.parametrize(("text", "gbps"), [("25000\n", 25.0), ("1000", 1.0), ("-1\n", None), ("4294967295", None)])
def test_net_speed(text: str, gbps: float | None) -> None:
    assert net_line_rate_gbps(text) == gbps


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (fc_line_rate_gbps, "fast", "fc_host speed"),
        (ib_line_rate_gbps, "25 Gbit", "infiniband port rate"),
        (net_line_rate_gbps, "", "net speed"),
    ],
)
def test_garbled_sysfs_text_is_a_parse_error(parse, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parse(text)


def test_emulated_profile_passes_the_real_lab_captures_and_fails_a_fifth_of_them() -> None:
    """The emulated bounds sit below what the emulated lab really did, and catch a link
    that does a small fraction of it (the perftest captures in fixtures/outputs/perftest/lab/)."""
    from fabqual.tools.perftest import parse_perftest

    lab = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "perftest" / "lab"
    emulated = load_thresholds("emulated")
    for name in ("ib_write_bw_65536_client.txt", "ib_send_bw_4096_client.txt", "ib_read_bw_65536_mtu4096_client.txt"):
        result = parse_perftest((lab / name).read_text())
        bound = emulated.bound("nvmet_rdma", "bw_gbps", {"size": str(result.bw_rows[0].size)}, line_rate=25.0)
        assert result.bw_gbps >= bound.threshold, name
        assert result.bw_gbps / 5 < bound.threshold, name
    for name in ("ib_write_lat_2_client.txt", "ib_send_lat_64_client.txt"):
        result = parse_perftest((lab / name).read_text())
        context = {"size": str(result.lat_rows[0].size)}
        assert result.lat_typical_us <= emulated.bound("nvmet_rdma", "lat_typical_us", context).threshold, name
        assert result.lat_p99_us <= emulated.bound("nvmet_rdma", "lat_p99_us", context).threshold, name
