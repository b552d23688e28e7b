"""IP over the IPoFC tunnel, at every MTU the link declares, plus sg3_utils cross-checks.

Traffic tests run ping and iperf3 between the two tunnel ends (the target's and
the initiator's TUN devices), so every byte crosses SCSI WRITEs and held READs
on the link's carrier. The cross-checks ask the target with an independent SCSI
client (sg3_utils on the initiator's ``/dev/sgN``) and compare with what the
codec (``fabqual.ipofc.scsi``/``dispatch``) says the target must answer.
"""

from __future__ import annotations

import re
import shlex

import pytest

from fabqual.handles import IpTunnel
from fabqual.ipofc import dispatch, scsi
from fabqual.plugin.keys import RUN
from fabqual.tools.iperf3 import run_iperf3
from fabqual.tools.ping import run_ping
from fabqual.tools.sg_inq import parse_sg_inq
from fabqual.topology.model import IpofcParams, Link

PING_COUNT = 20
IPERF_SECONDS = 10
UDP_BITRATE = "10M"  # offered load; the emulated floor (udp_mbps) must arrive of it


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``mtu`` over the MTUs the topology's ipofc links declare (ids ``mtu=1500``)."""
    if "mtu" not in metafunc.fixturenames:
        return
    topology = metafunc.config.stash[RUN].topology
    mtus = sorted({m for link in topology.links if isinstance(link.params, IpofcParams) for m in link.params.mtus})
    metafunc.parametrize("mtu", mtus or [1500], ids=lambda m: f"mtu={m}")


@pytest.fixture
def tunnel(ip_tunnel: IpTunnel, link: Link, mtu: int) -> IpTunnel:
    """The link's tunnel with both TUN devices at ``mtu``."""
    assert isinstance(link.params, IpofcParams)
    if mtu not in link.params.mtus:
        pytest.skip(f"link {link.name} does not declare MTU {mtu} (mtus: {list(link.params.mtus)})")
    return ip_tunnel.set_mtu(mtu) if ip_tunnel.mtu != mtu else ip_tunnel


@pytest.mark.capability("ip_tunnel")
def test_ping(link: Link, tunnel: IpTunnel, check_metric, mtu: int) -> None:  # type: ignore[no-untyped-def]
    """Pings from the initiator end to the target end, full-MTU sized with DF set, all come back in time."""
    size = tunnel.mtu - 28  # IPv4 + ICMP headers: the largest unfragmented echo
    result = run_ping(tunnel.initiator.executor, tunnel.target.address, PING_COUNT, 0.2, size)
    context = {"mtu": str(mtu)}
    check_metric(link, "loss_pct", result.loss_pct, context=context)
    assert result.rtt_avg_ms is not None and result.rtt_max_ms is not None, "no echo came back"
    check_metric(link, "rtt_avg_ms", result.rtt_avg_ms, context=context)
    check_metric(link, "rtt_max_ms", result.rtt_max_ms, context=context)


@pytest.mark.capability("ip_tunnel")
@pytest.mark.parametrize("direction", ["to_target", "to_initiator"], ids=lambda d: f"dir={d}")
def test_iperf3_tcp(link: Link, tunnel: IpTunnel, check_metric, mtu: int, direction: str) -> None:  # type: ignore[no-untyped-def]
    """TCP across the tunnel in each direction reaches the profile's floor."""
    result = run_iperf3(
        tunnel.target.executor,
        tunnel.initiator.executor,
        address=tunnel.target.address,
        reverse=direction == "to_initiator",
        seconds=IPERF_SECONDS,
    )
    check_metric(link, "tcp_mbps", result.mbps, context={"mtu": str(mtu), "direction": direction})


@pytest.mark.capability("ip_tunnel")
def test_iperf3_udp(link: Link, tunnel: IpTunnel, check_metric, mtu: int) -> None:  # type: ignore[no-untyped-def]
    """UDP at a fixed offered rate arrives with bounded loss and jitter."""
    result = run_iperf3(
        tunnel.target.executor,
        tunnel.initiator.executor,
        address=tunnel.target.address,
        udp=True,
        bitrate=UDP_BITRATE,
        seconds=IPERF_SECONDS,
    )
    assert result.lost_pct is not None and result.jitter_ms is not None, "iperf3 UDP reported no loss/jitter"
    context = {"mtu": str(mtu)}
    check_metric(link, "udp_mbps", result.mbps, context=context)
    check_metric(link, "udp_loss_pct", result.lost_pct, context=context)
    check_metric(link, "udp_jitter_ms", result.jitter_ms, context=context)


# --- sg3_utils against the codec --------------------------------------------------------------

EXPECTED = dispatch.LunConfig()


def _sg(tunnel: IpTunnel) -> str:
    return tunnel.facts["sg_device"]


@pytest.mark.capability("ip_tunnel")
def test_sg_inq_shows_scanner_with_fabqual_strings(ip_tunnel: IpTunnel) -> None:
    """sg_inq sees peripheral type 6 and exactly the vendor/product/revision the codec encodes."""
    out = ip_tunnel.initiator.executor.run(f"sg_inq {shlex.quote(_sg(ip_tunnel))}", timeout=60).stdout
    inquiry = EXPECTED.inquiry
    seen = parse_sg_inq(out)
    assert seen.peripheral_type == scsi.PERIPHERAL_DEVICE_TYPE_SCANNER, out
    assert (seen.vendor, seen.product, seen.revision) == (inquiry.vendor, inquiry.product, inquiry.revision), out


@pytest.mark.capability("ip_tunnel")
def test_sg_inq_raw_bytes_equal_codec(ip_tunnel: IpTunnel) -> None:
    """Standard INQUIRY, VPD 0x00 and 0x80 as sg_inq reads them raw equal the dispatcher's bytes."""
    target = dispatch.Dispatcher(EXPECTED)
    sg = shlex.quote(_sg(ip_tunnel))
    for args, cdb in (
        ("--len=36", scsi.encode_cdb(scsi.Opcode.INQUIRY, allocation_length=36)),
        ("--page=0x00 --len=252", scsi.encode_cdb(scsi.Opcode.INQUIRY, evpd=1, page_code=0, allocation_length=252)),
        ("--page=0x80 --len=252", scsi.encode_cdb(scsi.Opcode.INQUIRY, evpd=1, page_code=0x80, allocation_length=252)),
    ):
        expected = target.handle(cdb)
        assert expected is not None and expected.status == scsi.Status.GOOD
        out = ip_tunnel.initiator.executor.run(f"sg_inq --raw {args} {sg} | od -An -v -tx1", timeout=60).stdout
        assert bytes.fromhex(out.replace("\n", " ")) == expected.data_in, f"sg_inq {args}"


@pytest.mark.capability("ip_tunnel")
def test_sg_turs_good(ip_tunnel: IpTunnel) -> None:
    """TEST UNIT READY answers GOOD (sg_turs exits 0), ten times in a row."""
    ip_tunnel.initiator.executor.run(f"sg_turs -n 10 {shlex.quote(_sg(ip_tunnel))}", timeout=60)


# (CDB, expected sense key, ASC) the codec prescribes; sg_raw prints status and sense.
SG_RAW_CASES = {
    "unknown_opcode": "ff 00 00 00 00 00",
    "inquiry_cmddt": "12 02 00 00 24 00",
    "inquiry_bad_vpd": "12 01 99 00 ff 00",
    "mode_sense_saved": "1a 00 c2 00 ff 00",
    "read10_past_end": "28 00 ff ff ff ff 00 00 01 00",
}


@pytest.mark.capability("ip_tunnel")
@pytest.mark.parametrize("case", sorted(SG_RAW_CASES), ids=lambda c: f"cdb={c}")
def test_sg_raw_check_condition_matches_codec(ip_tunnel: IpTunnel, case: str) -> None:
    """sg_raw gets CHECK CONDITION with exactly the sense key and ASC/ASCQ the dispatcher gives."""
    cdb = bytes.fromhex(SG_RAW_CASES[case])
    expected = dispatch.Dispatcher(EXPECTED).handle(cdb)
    assert expected is not None and expected.status == scsi.Status.CHECK_CONDITION
    sense = scsi.decode_sense(expected.sense)
    result = ip_tunnel.initiator.executor.run(
        f"sg_raw -v -R {shlex.quote(_sg(ip_tunnel))} {SG_RAW_CASES[case]} 2>&1", timeout=60, check=False
    )
    out = result.stdout
    assert "SCSI Status: Check Condition" in out, out
    # sg_raw -v prints " Raw sense data (in hex), sb_len=18, embedded_len=18" then hex rows.
    raw_block = re.search(r"Raw sense data \(in hex\)[^\n]*\n((?:[ \t]+[0-9a-f]{2}(?:[ \t]+[0-9a-f]{2})*\n)+)", out)
    assert raw_block, f"sg_raw printed no raw sense bytes: {out}"
    got = scsi.decode_sense(bytes.fromhex(" ".join(raw_block[1].split())))
    assert (got.key, got.asc, got.ascq) == (sense.key, sense.asc, sense.ascq), out
