"""The IPoFC guest runtime on one lab guest: TCMU target daemon, tcm_loop, SG_IO initiator daemon.

On ``tgt`` of the running emulated lab: a ``user`` backstore with
``dev_config=fabqual/<cfg>`` served by ``fabqual.ipofc.target_daemon``, exposed to
the same guest by ``tcm_loop``; ``fabqual.ipofc.initiator_daemon`` drives the
resulting ``/dev/sgN``. Each daemon runs in its own network namespace, so a ping
between the two TUN ends can only cross the SCSI path. sg3_utils (an independent
initiator) is checked against the codec. Everything created is removed, also when
a step fails. The lab is the session's shared one (tests/self/conftest.py);
these tests never stop or reboot it.
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import fabqual
from fabqual.executors.base import Executor
from fabqual.ipofc import scsi
from fabqual.ipofc.dispatch import Dispatcher
from fabqual.tools.ping import parse_ping
from fabqual.topology import Topology

CONFIGFS = "/sys/kernel/config/target"
HBA = 9  # user_9: an index no other fabqual driver uses, so a parallel link test is untouched
TEST_NET = ("10.77.29.1", "10.77.29.2")


@dataclass
class OneGuestTunnel:
    """What the fixture built on tgt, for the tests to use and the finalizer to remove."""

    node: Executor
    tag: str
    directory: str
    sg: str = ""

    @property
    def namespaces(self) -> tuple[str, str]:
        return f"fqlv-t-{self.tag}", f"fqlv-i-{self.tag}"

    @property
    def backstore(self) -> str:
        return f"{CONFIGFS}/core/user_{HBA}/fqlv_{self.tag}"

    @property
    def wwns(self) -> tuple[str, str]:
        suffix = int(self.tag, 16)
        return f"naa.5001405f{suffix:08x}", f"naa.5001405e{suffix:08x}"

    def run(self, command: str, timeout: float = 60, check: bool = True) -> str:
        return self.node.run(command, timeout=timeout, check=check).stdout

    def in_ns(self, which: int, command: str, timeout: float = 60, check: bool = True) -> str:
        return self.run(f"ip netns exec {self.namespaces[which]} {command}", timeout=timeout, check=check)


def upload(node: Executor, directory: str) -> None:
    """The stdlib-only runtime: fabqual/errors.py and fabqual/ipofc/*.py, with an empty package root."""
    package = Path(fabqual.__file__).parent
    node.run(f"mkdir -p {directory}/fabqual/ipofc && touch {directory}/fabqual/__init__.py", timeout=30)
    node.put(package / "errors.py", f"{directory}/fabqual/errors.py")
    for path in sorted((package / "ipofc").glob("*.py")):
        node.put(path, f"{directory}/fabqual/ipofc/{path.name}")


def start(t: OneGuestTunnel, which: int, module: str, args: str, name: str) -> None:
    """A daemon in its namespace, in the background; waits for its one 'ready' line."""
    out = f"{t.directory}/{name}.out"
    command = (
        f"cd {t.directory} && ip netns exec {t.namespaces[which]} setsid python3 -m {module} {args}"
        f" --log {t.directory}/{name}.log > {out} 2>&1 < /dev/null & echo $! > {t.directory}/{name}.pid"
    )
    t.run(command, timeout=30)
    deadline = time.monotonic() + 90  # python3 start-up under TCG on a busy lab
    while "ready" not in t.run(f"cat {out}", check=False):
        if time.monotonic() > deadline or not t.node.run(f"kill -0 $(cat {t.directory}/{name}.pid)", check=False).ok:
            log = t.run(f"tail -n 5 {t.directory}/{name}.log {out} 2>&1", check=False)
            pytest.fail(f"{module} did not print 'ready': {log}")
        time.sleep(1)


def stop(t: OneGuestTunnel, name: str, within: float = 15.0) -> bool:
    """SIGTERM, then True if it exited within ``within`` seconds (KILL after, never left running)."""
    pid_file = f"{t.directory}/{name}.pid"
    return t.node.run(
        f"P=$(cat {pid_file} 2>/dev/null) || exit 0; kill -TERM $P 2>/dev/null || exit 0;"
        f" for i in $(seq {int(within * 4)}); do kill -0 $P 2>/dev/null || exit 0; sleep 0.25; done;"
        " kill -KILL $P; exit 1",
        timeout=within + 30,
        check=False,
    ).ok


def teardown(t: OneGuestTunnel) -> None:
    """Remove everything the fixture may have created, in reverse, whatever state it got to."""
    stop(t, "initiator")
    stop(t, "target")
    wwn_t, _ = t.wwns
    tpg = f"{CONFIGFS}/loopback/{wwn_t}/tpgt_1"
    t.run(
        f"rm -f {tpg}/lun/lun_0/fqlv_port; rmdir {tpg}/lun/lun_0 2>/dev/null;"
        f" echo NULL > {tpg}/nexus 2>/dev/null; rmdir {tpg} {CONFIGFS}/loopback/{wwn_t} 2>/dev/null;"
        f" rmdir {t.backstore} 2>/dev/null; rmdir {CONFIGFS}/core/user_{HBA} 2>/dev/null;"
        f" ip netns del {t.namespaces[0]} 2>/dev/null; ip netns del {t.namespaces[1]} 2>/dev/null;"
        f" rm -rf {t.directory}; true",
        timeout=60,
    )


@contextmanager
def one_guest_tunnel(topology: Topology, *, offload: bool = False, target_args: str = "") -> Iterator[OneGuestTunnel]:
    """Both daemons on tgt over tcm_loop, each in its namespace; removed again whatever happens."""
    from fabqual.executors.ssh import SshExecutor

    node = SshExecutor.for_node(topology.node("tgt"))
    tag = secrets.token_hex(3)
    t = OneGuestTunnel(node, tag, f"/var/tmp/fqlv-{tag}")
    flag = " --offload" if offload else ""
    try:
        upload(node, t.directory)
        t.run("modprobe target_core_user && modprobe tcm_loop && modprobe tun && modprobe sg", timeout=60)
        size = Dispatcher().config.capacity_blocks * 512
        t.run(
            f"mkdir -p {t.backstore} && for kv in dev_size={size} dev_config=fabqual/live-{tag} hw_block_size=512"
            f" hw_max_sectors=8192 max_data_area_mb=64 nl_reply_supported=-1; do echo $kv > {t.backstore}/control;"
            f" done && echo 1 > {t.backstore}/enable",
            timeout=30,
        )
        for ns in t.namespaces:
            t.run(f"ip netns add {ns} && ip -n {ns} link set lo up", timeout=30)
        start(
            t,
            0,
            "fabqual.ipofc.target_daemon",
            f"--backstore fqlv_{tag} --tun fqlv0 --address {TEST_NET[0]}/30 --mtu 1500{flag} {target_args}",
            "target",
        )
        # Nexus before the LUN: the LUN's creation scans the host, and a scan without a nexus finds nothing.
        wwn_t, wwn_i = t.wwns
        tpg = f"{CONFIGFS}/loopback/{wwn_t}/tpgt_1"
        t.run(
            f"mkdir -p {tpg} && echo {wwn_i} > {tpg}/nexus && mkdir {tpg}/lun/lun_0"
            f" && ln -s {t.backstore} {tpg}/lun/lun_0/fqlv_port",
            timeout=60,
        )
        t.sg = find_sg(t)
        start(
            t,
            1,
            "fabqual.ipofc.initiator_daemon",
            f"--sg {t.sg} --tun fqlv1 --address {TEST_NET[1]}/30 --mtu 1500 --inflight-reads 4 --inflight-writes 4"
            f"{flag}",
            "initiator",
        )
        yield t
    finally:
        teardown(t)
        node.close()


@pytest.fixture(scope="module")
def tunnel(topology: Topology) -> Iterator[OneGuestTunnel]:
    with one_guest_tunnel(topology) as t:
        yield t


def find_sg(t: OneGuestTunnel, timeout: float = 60.0) -> str:
    """The sg device of our LUN: tcm_loop's ``tpgt_1/address`` is ``host:channel:target``, LUN 0."""
    wwn_t, _ = t.wwns
    address = t.run(f"cat {CONFIGFS}/loopback/{wwn_t}/tpgt_1/address", timeout=30).strip() + ":0"
    deadline = time.monotonic() + timeout
    while True:
        sg = t.run(f"ls /sys/bus/scsi/devices/{address}/scsi_generic 2>/dev/null", check=False).strip()
        if sg:
            return f"/dev/{sg}"
        if time.monotonic() > deadline:
            pytest.fail(f"no sg device for SCSI address {address} (loopback {wwn_t}) within {timeout:.0f} s")
        time.sleep(1)


def sg_raw(t: OneGuestTunnel, cdb: bytes, data_in: int = 0) -> tuple[str, bytes]:
    """sg3_utils' sg_raw: its text report and the data-in bytes."""
    out = f"{t.directory}/raw.bin"
    read = f"-r {data_in} -o {out} " if data_in else ""
    text = t.node.run(
        f"rm -f {out}; sg_raw {read}{t.sg} {' '.join(f'{b:02x}' for b in cdb)} 2>&1", timeout=30, check=False
    ).stdout
    data = base64.b64decode(t.run(f"base64 -w0 {out} 2>/dev/null", check=False)) if data_in else b""
    return text, data


def test_sg_inq_sees_type_6_with_fabquals_strings(tunnel: OneGuestTunnel) -> None:
    """sg_inq (an independent initiator) reads peripheral type 6 and the codec's vendor/product/revision."""
    out = tunnel.run(f"sg_inq {tunnel.sg}", timeout=30)
    inquiry = scsi.StandardInquiry()
    assert "PDT=6" in out
    assert f"Vendor identification: {inquiry.vendor}" in out
    assert f"Product identification: {inquiry.product}" in out


def test_sg_turs_is_ready(tunnel: OneGuestTunnel) -> None:
    """TEST UNIT READY through tcm_loop and the ring comes back GOOD (sg_turs exits 0)."""
    assert tunnel.node.run(f"sg_turs {shlex.quote(tunnel.sg)}", timeout=30, check=False).ok


@pytest.mark.parametrize(
    "cdb",
    [
        scsi.encode_cdb(scsi.Opcode.INQUIRY, evpd=1, page_code=0x80, allocation_length=252),
        scsi.encode_cdb(scsi.Opcode.INQUIRY, evpd=1, page_code=0x00, allocation_length=252),
        scsi.encode_cdb(scsi.Opcode.INQUIRY, allocation_length=5),
        scsi.encode_cdb(scsi.Opcode.MODE_SENSE_6, page_code=0x3F, allocation_length=252),
    ],
    ids=["vpd80", "vpd00", "inquiry-alloc5", "mode-sense-all"],
)
def test_sg_raw_data_matches_the_dispatcher(tunnel: OneGuestTunnel, cdb: bytes) -> None:
    """What sg_raw reads through the kernel is byte for byte what the dispatcher answers for that CDB."""
    expected = Dispatcher().handle(cdb)
    assert expected is not None and expected.status == scsi.Status.GOOD
    text, data = sg_raw(tunnel, cdb, data_in=252)
    assert "Good" in text, text
    assert data == expected.data_in


@pytest.mark.parametrize(
    "cdb",
    [
        bytes.fromhex("25000000000000000000"),  # READ CAPACITY(10): not ours
        scsi.encode_cdb(scsi.Opcode.INQUIRY, evpd=1, page_code=0x42, allocation_length=252),  # no such VPD page
        scsi.encode_cdb(scsi.Opcode.MODE_SENSE_6, page_code=0x03, allocation_length=252),  # page the original died on
    ],
    ids=["read-capacity-10", "vpd42", "mode-page-3"],
)
def test_sg_raw_rejections_carry_the_dispatchers_sense(tunnel: OneGuestTunnel, cdb: bytes) -> None:
    """CHECK CONDITION with the dispatcher's sense key and additional sense, as sg_raw decodes them."""
    expected = Dispatcher().handle(cdb)
    assert expected is not None and expected.status == scsi.Status.CHECK_CONDITION
    sense = scsi.decode_sense(expected.sense)
    text, _ = sg_raw(tunnel, cdb, data_in=252)
    assert "Check Condition" in text, text
    assert "Illegal Request" in text and sense.key == scsi.SenseKey.ILLEGAL_REQUEST, text
    description = {0x20: "invalid command operation code", 0x24: "invalid field in cdb"}[sense.asc]
    assert description in text.lower(), text


def test_ping_crosses_the_scsi_path(tunnel: OneGuestTunnel) -> None:
    """20 pings from the initiator's namespace to the target's: none lost (the only route is the tunnel)."""
    routes = tunnel.in_ns(1, "ip route")
    assert "default" not in routes and TEST_NET[0] not in tunnel.in_ns(1, "ip -4 addr")
    result = parse_ping(tunnel.in_ns(1, f"ping -c 20 -i 0.2 -W 5 {TEST_NET[0]}", timeout=120, check=False))
    assert result.received == result.transmitted == 20, result
    assert result.rtt_avg_ms is not None and result.rtt_avg_ms > 0


def test_iperf3_tcp_both_directions(tunnel: OneGuestTunnel) -> None:
    """TCP through the tunnel both ways moves data (a non-zero, parsed rate), with the daemons' logs clean."""
    tunnel.in_ns(0, f"iperf3 -s -D -B {TEST_NET[0]} -I {tunnel.directory}/iperf.pid", timeout=30)
    try:
        tunnel.run(
            f"for i in $(seq 40); do ip netns exec {tunnel.namespaces[0]} ss -ltn | grep -q :5201 && exit 0;"
            " sleep 0.5; done; exit 1",
            timeout=60,
        )
        for reverse in ("", "-R"):
            out = tunnel.in_ns(1, f"iperf3 -J -t 3 {reverse} -c {TEST_NET[0]}", timeout=120)
            end = json.loads(out)["end"]
            assert end["sum_received"]["bits_per_second"] > 100_000, (reverse, end["sum_received"])
    finally:
        tunnel.run(f"kill $(cat {tunnel.directory}/iperf.pid) 2>/dev/null; true", timeout=30)
    logs = tunnel.run(f"cat {tunnel.directory}/target.log {tunnel.directory}/initiator.log")
    assert "ERROR" not in logs and "Traceback" not in logs, logs


def test_sigterm_stops_both_daemons_cleanly(tunnel: OneGuestTunnel) -> None:
    """SIGTERM: each daemon exits within seconds with status 0, logs its final counters, and its TUN is gone."""
    assert stop(tunnel, "initiator"), "initiator daemon ignored SIGTERM for 15 s"
    assert stop(tunnel, "target"), "target daemon ignored SIGTERM for 15 s"
    logs = tunnel.run(f"cat {tunnel.directory}/target.log {tunnel.directory}/initiator.log")
    assert logs.count("stopped:") == 2, logs
    assert "fqlv1" not in tunnel.in_ns(1, "ip link") and "fqlv0" not in tunnel.in_ns(0, "ip link")
