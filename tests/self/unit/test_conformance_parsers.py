"""What the conformance cases read and write, on real outputs (origins beside the fixtures): referral entries,
DH-HMAC-CHAP secrets, AEN uevents, udev's rules in force, ONCS, the nodes' NVMe state and the cases' host NQNs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabqual.conformance.attempt import HostIdentity, connect_command
from fabqual.conformance.dhchap import make_secret, parse_secret
from fabqual.conformance.reservations import ONCS_RESERVATIONS, parse_oncs
from fabqual.conformance.snapshot import NvmeState
from fabqual.drivers.nvme_aen import DISCOVERY_CHANGE, autoconnect_rules, parse_uevents
from fabqual.drivers.nvme_discovery import DISCOVERY_NQN, parse_discovery_log
from fabqual.drivers.nvme_host import ConnectSpec
from fabqual.drivers.nvmet_referrals import referral_dir
from fabqual.errors import DriverError, LabError, ParseError

OUTPUTS = Path(__file__).parents[3] / "fixtures" / "outputs"
CAPTURED = "nqn.2024-01.io.fabqual:conf-referral-capture"


@pytest.mark.parametrize("name", ["v2.3_discover_loop_referral.json", "v2.3_discover_loop_referral.txt"])
def test_referral_entry_from_nvme_cli_2_3(name: str) -> None:
    """nvme-cli 2.3 names a referral "discovery subsystem referral" (JSON and text): it is a referral, not an
    NVMe subsystem, and the current discovery controller's own entry is neither."""
    log = parse_discovery_log((OUTPUTS / "nvme-cli" / name).read_text())
    assert log.genctr == 11 and log.subsystems() == {CAPTURED}
    (referral,) = log.referrals()
    assert (referral.trtype, referral.traddr, referral.trsvcid, referral.subnqn) == (
        "rdma",
        "192.168.77.1",
        "4430",
        DISCOVERY_NQN,
    )


def test_referral_names_are_plain_configfs_items() -> None:
    assert referral_dir("3", "conf-referral").endswith("/ports/3/referrals/conf-referral")
    for port, name in (("3", "../x"), ("3", "a b"), ("x", "ok")):
        with pytest.raises(DriverError, match="plain name"):
            referral_dir(port, name)


def test_dhchap_secrets_of_nvme_cli_read_and_made_alike() -> None:
    """Every secret nvme-cli 2.3 generated parses (CRC checked, 32 and 64 byte keys); ours round-trip."""
    lines = (OUTPUTS / "nvme-cli" / "v2.3_gen_dhchap_key.txt").read_text().split()
    assert [(hmac, len(key)) for hmac, key in map(parse_secret, lines)] == [(0, 32), (1, 32), (0, 64)]
    key = bytes(range(48))
    assert parse_secret(make_secret(key, hmac=2)) == (2, key)
    assert make_secret() != make_secret()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DHHC-1:00:abc", "not DHHC-1"),
        ("DHHC-1:zz:AAAA:", "not hex"),
        ("DHHC-1:00:" + "A" * 24 + ":", "key of 14 bytes"),
    ],
)
def test_malformed_secret_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_secret(text)


def test_secret_with_a_wrong_crc_is_refused() -> None:
    good = make_secret(bytes(32))
    body = good.split(":")[2]
    flipped = body[:-3] + ("B" if body[-3] == "A" else "A") + body[-2:]
    with pytest.raises(ParseError, match="CRC-32"):
        parse_secret(f"DHHC-1:00:{flipped}:")


def test_discovery_change_uevent_from_udevadm_252() -> None:
    """The kernel's and udev's copies of the AEN uevent, with the controller and NVME_AEN."""
    kernel, udev = parse_uevents((OUTPUTS / "udevadm" / "v252_monitor_nvme_aen.txt").read_text())
    assert (kernel.source, udev.source) == ("KERNEL", "UDEV")
    assert kernel.devpath.endswith("/nvme0") and kernel.properties["NVME_AEN"] == DISCOVERY_CHANGE
    with pytest.raises(ParseError, match="no ACTION"):
        parse_uevents("KERNEL[1.0] change   /devices/virtual/nvme-fabrics/ctl/nvme0 (nvme)\n")


def test_autoconnect_rule_hidden_by_the_lab_image() -> None:
    """On the lab guest /etc's empty 70-nvmf-autoconnect.rules hides nvme-cli's: no rule in force answers the AEN;
    without that file nvme-cli's /usr/lib rule is the one in force."""
    listing = (OUTPUTS / "udev" / "v252_rule_listing_lab.txt").read_text()
    assert autoconnect_rules(listing) == []
    without_override = "\n".join(line for line in listing.splitlines() if not line.startswith("/etc/"))
    assert autoconnect_rules(without_override) == ["/usr/lib/udev/rules.d/70-nvmf-autoconnect.rules"]
    with pytest.raises(ParseError, match="directory file count"):
        autoconnect_rules("/etc/udev/rules.d 70-x.rules many")


def test_oncs_of_kernel_nvmet_has_no_reservations() -> None:
    oncs = parse_oncs((OUTPUTS / "nvme-cli" / "v2.3_id_ctrl_nvmet.json").read_text())
    assert oncs == 0xC and not oncs & ONCS_RESERVATIONS
    with pytest.raises(ParseError, match="oncs"):
        parse_oncs('{"vid": 0}')


def test_state_difference_names_what_appeared_and_went() -> None:
    before = NvmeState(host=("controller nvme1 nqn.a live",), target=("subsystem nqn.a",))
    after = NvmeState(host=("controller nvme1 nqn.a live", "controller nvme2 nqn.b connecting"), target=())
    assert before.difference(before) == ""
    assert before.difference(after) == "host: + controller nvme2 nqn.b connecting; target: - subsystem nqn.a"


def test_case_host_identity_and_connect_command() -> None:
    """A case's host NQN gets one fixed host ID (the kernel refuses an ID under two NQNs); a bad NQN is refused."""
    one, again = HostIdentity("nqn.2024-01.io.fabqual:conf-a"), HostIdentity("nqn.2024-01.io.fabqual:conf-a")
    assert one.hostid == again.hostid != HostIdentity("nqn.2024-01.io.fabqual:conf-b").hostid
    spec = ConnectSpec("rdma", "192.168.77.1", "nqn.2024-01.io.fabqual:conf-x", trsvcid="4420")
    command = connect_command(spec, one, "--dhchap-secret=k")
    assert command[:8] == ["nvme", "connect", "-t", "rdma", "-a", "192.168.77.1", "-s", "4420"]
    assert command[-3:] == ["--ctrl-loss-tmo", "0", "--dhchap-secret=k"] and one.hostid in command
    own = HostIdentity("nqn.2014-08.org.nvmexpress:uuid:abfa8a68-9f98-4289-b0ce-444afaffe6af", own=True)
    assert own.args() == ["-q", own.hostnqn]  # the node's own host ID, as nvme-cli reads it
    with pytest.raises(LabError, match="host NQN"):
        HostIdentity("not an nqn; rm -rf /")
