"""The emulated lab: two real Debian 12 kernels under QEMU, reached over real SSH.

The session fixture (tests/self/conftest.py) boots the lab once (building the
image first if the cache has none: minutes cold, seconds warm) and stops it at
the end. Nothing
here is mocked: the guests, their kernels, sshd and the data link are real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabqual.errors import LabError
from fabqual.executors.ssh import SshExecutor
from fabqual.lab import EmulatedLab
from fabqual.lab import vm as lab_vm
from fabqual.topology import Topology, load_topology

FABRIC_MODULES = "nvmet nvmet-rdma nvme-fc nvmet-fc rdma_rxe target_core_user tcm_loop"


def test_prepare_writes_a_loadable_topology_without_booting(tmp_path: Path) -> None:
    """prepare() picks ports and keys and writes a valid emulated topology; no QEMU is started."""
    lab = EmulatedLab(cache=tmp_path)
    path = lab.prepare()
    topology = load_topology(path)
    assert topology.emulated and topology.profile == "emulated"
    assert [n.name for n in topology.nodes] == ["tgt", "ini"]
    assert {"fc_nvme", "nvmet_rdma", "ipofc"} <= {link.type for link in topology.links}
    tgt, ini = topology.node("tgt"), topology.node("ini")
    assert tgt.port != ini.port and tgt.address == "127.0.0.1"
    assert tgt.host_key_check and tgt.known_hosts == str(lab.known_hosts)
    assert tgt.rnic("rnic0").address == "192.168.77.1/24" and ini.rnic("rnic0").address == "192.168.77.2/24"
    assert [s.path for s in tgt.scratch_devices] == ["/dev/nullb0", "/dev/nullb1", "/dev/nullb2", "/dev/nullb3"]
    known = lab.known_hosts.read_text()
    assert f"[127.0.0.1]:{tgt.port} ssh-ed25519 " in known and f"[127.0.0.1]:{ini.port} ssh-ed25519 " in known
    assert lab.status().state == "down" and not lab_vm.find_stray(lab.run_dir)
    # A second prepare keeps the ports, so a topology loaded at collection stays valid.
    assert load_topology(lab.prepare()).node("tgt").port == tgt.port


def test_second_up_while_one_is_booting_says_so(tmp_path: Path) -> None:
    """While one process holds the lab lock (booting), another `up` fails with one clear line."""
    booting = EmulatedLab(cache=tmp_path)
    with booting._lock(wait=False), pytest.raises(LabError, match="being brought up by another process"):
        EmulatedLab(cache=tmp_path).ensure_up()


def test_ssh_reaches_both_guests_with_checked_host_keys(topology: Topology, ssh: dict[str, SshExecutor]) -> None:
    """The fabqual SSH executor logs into both guests, host keys verified against the lab's known_hosts."""
    for name in ("tgt", "ini"):
        node = topology.node(name)
        assert node.host_key_check
        result = ssh[name].run("hostname; uname -r; nproc")
        hostname, kernel, cpus = result.stdout.split()
        assert hostname == name
        assert kernel.startswith("6.1.0-") and kernel.endswith("-amd64")
        assert cpus == "1"


def test_data_link_carries_ping_between_guests(ssh: dict[str, SshExecutor]) -> None:
    """The UDP socket link between the guests carries IP: tgt pings ini's data address."""
    result = ssh["tgt"].run("ping -c 3 -W 5 192.168.77.2", timeout=60)
    assert " 0% packet loss" in result.stdout, result.stdout


def test_fabric_modules_load_including_built_fcloop(ssh: dict[str, SshExecutor]) -> None:
    """Debian's fabric modules and the out-of-tree nvme-fcloop / nvme-loop load in the guest."""
    tgt = ssh["tgt"]
    tgt.run(f"modprobe -a {FABRIC_MODULES}", timeout=120)
    tgt.run("modprobe nvme-fcloop && modprobe nvme-loop", timeout=60)
    loaded = tgt.run("cat /proc/modules").stdout
    for module in (*FABRIC_MODULES.replace("-", "_").split(), "nvme_fcloop", "nvme_loop"):
        assert f"\n{module} " in f"\n{loaded}", f"{module} not loaded"
    # rxe's crc32 soft dependency is present: a soft-RoCE device exists on the data link or can be made
    # (one rxe per netdev: a link test may already have made one).
    tgt.run(
        "rdma link show | grep -q 'netdev eth1' ||"
        " { rdma link add fabqual_probe type rxe netdev eth1 && rdma link delete fabqual_probe; }",
        timeout=60,
    )
    # Leave the guest as found: unload what this test loaded (best effort, order matters).
    tgt.run("modprobe -r nvme-fcloop nvme-loop", check=False, timeout=60)


def test_ctrl_c_during_up_leaves_no_qemu(lab: EmulatedLab, tmp_path: Path) -> None:
    """Ctrl-C while a second, separate lab is booting stops its guests; nothing of it keeps running.

    Uses its own state dir (tmp_path) and the cached image, so the session's lab is not touched.
    """
    # A shell that starts a job with & ignores SIGINT in it, and Python then keeps it ignored
    # (CI runners do this): give the child the handler a terminal's Ctrl-C would meet.
    code = (
        "import signal, sys; from pathlib import Path; from fabqual.lab import EmulatedLab; "
        "signal.signal(signal.SIGINT, signal.default_int_handler); "
        "EmulatedLab(cache=Path(sys.argv[1])).ensure_up()"
    )
    run_dir = tmp_path / "lab" / "run"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not lab_vm.find_stray(run_dir):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the second lab started no QEMU within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=180)  # stopping TCG guests on a loaded host takes a while
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            raise AssertionError(f"still running 180 s after Ctrl-C; its stderr:\n{err[-3000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        strays = lab_vm.find_stray(run_dir)
        if strays:  # whatever went wrong, this test's lab does not outlive it (guests, host sysctls)
            EmulatedLab(cache=tmp_path).down()
    assert not strays, f"QEMU {strays} kept running after Ctrl-C (stopped by the test)"
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, f"exit {proc.returncode}: {err[-2000:]}"
    assert EmulatedLab(cache=tmp_path).status().state == "down"


def test_killed_guest_is_reported_with_its_console(own_lab: EmulatedLab) -> None:
    """A guest whose QEMU dies makes the lab 'broken', naming the guest and showing its console tail."""
    lab = own_lab
    status = lab.status()
    assert status.state == "running"
    ini = next(g for g in status.guests if g.name == "ini")
    assert ini.pid is not None
    os.kill(ini.pid, signal.SIGKILL)
    lab_vm.stop(ini.pid, lab.run_dir)  # waits until the pid is gone
    broken = lab.status()
    assert broken.state == "broken" and not lab.is_running()
    assert "guest ini" in broken.detail and "console tail" in broken.detail
    tail = lab_vm.console_tail(ini.console_log)
    assert tail != "(no console output)" and tail in broken.detail


def test_down_leaves_no_qemu_and_restores_sysctls(own_lab: EmulatedLab) -> None:
    """After down() no QEMU of the lab runs, and the socket buffer sysctls are back to their old values."""
    lab = own_lab
    saved = lab._read_state().get("sysctl", {})
    lab.down()
    assert not lab_vm.find_stray(lab.run_dir)
    assert lab.status().state == "down"
    for name, value in saved.items():
        assert int(Path("/proc/sys", *name.split(".")).read_text()) == value


def test_a_lab_left_by_a_killed_session_is_recognised_as_fabquals_own(lab: EmulatedLab) -> None:
    """The session that boots the lab is written into its state; once that process is dead the lab is
    an orphan (the next session takes it over when its guests answer), while a live session's is not."""
    from fabqual.drivers.rundir import RunOwner
    from fabqual.testing.dead_run import dead_owner

    dead = dead_owner()
    try:
        lab.claim(dead)
        assert lab.orphaned() == dead and lab.healthy()
        lab.claim(RunOwner.this_process())
        assert lab.orphaned() is None
    finally:
        lab.claim(None)  # as `fabqual lab up` left it: nobody's session stops it
    assert lab.orphaned() is None and lab.is_running()
