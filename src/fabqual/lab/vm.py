"""One emulated-lab guest under QEMU: its command line, start, SSH wait and stop.

Each guest has a management NIC on QEMU user networking (``restrict=on``, only
SSH forwarded from 127.0.0.1) and one data NIC on a UDP socket netdev whose
peer is the other guest, also on 127.0.0.1: nothing leaves the host.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fabqual.errors import LabError
from fabqual.lab import guest
from fabqual.lab.image import Image

QEMU = "qemu-system-x86_64"
MEMORY_MB = 2048
# Marker in every lab QEMU command line, so a stale guest can be found by its state dir.
NAME_PREFIX = "fabqual-lab"
# The speed the data NIC reports (virtio-net's speed/duplex properties, Mb/s): the rack's 25G
# RoCE ports. The guests see it in /sys/class/net/eth1/speed, rxe derives its port rate from it
# ("25 Gb/sec (1X EDR)", as qedr reports) and FCoE its fc_host speed, so line-rate thresholds
# run in the lab. What the UDP socket underneath carries is far less (see the emulated profile).
DATA_LINK_SPEED_MBPS = 25000


@dataclass(frozen=True)
class GuestSpec:
    """What makes one guest different from the other."""

    name: str
    index: int  # 1 for tgt, 2 for ini: MAC addresses and data address end in it
    ssh_port: int
    data_port: int  # this guest's UDP port for the data link
    peer_port: int  # the other guest's
    data_address: str
    state_dir: Path

    @property
    def console_log(self) -> Path:
        return self.state_dir / f"{self.name}.console.log"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def host_key(self) -> Path:
        return self.state_dir / f"{self.name}_ssh_host_ed25519_key"


def qemu_argv(spec: GuestSpec, image: Image, accel: str, authorized_keys: Path) -> list[str]:
    """The full QEMU command line of one guest (daemonized, pid file in the state dir)."""
    cpu = "host" if accel == "kvm" else "max"
    mgmt = f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22"
    data = f"socket,id=data,udp=127.0.0.1:{spec.peer_port},localaddr=127.0.0.1:{spec.data_port}"
    cfg = guest.FW_CFG_PREFIX
    append = "console=ttyS0 rdinit=/sbin/init net.ifnames=0 panic=-1 loglevel=4 mitigations=off"
    return [
        QEMU,
        "-name", f"{NAME_PREFIX}-{spec.name},process={NAME_PREFIX}-{spec.name}",
        "-accel", accel,
        "-cpu", cpu,
        "-smp", "1",
        "-m", str(MEMORY_MB),
        "-nodefaults",
        "-display", "none",
        "-no-reboot",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", append,
        "-serial", f"file:{spec.console_log}",
        # Slot order fixes the names: mgmt is eth0, data is eth1 (net.ifnames=0).
        "-netdev", mgmt,
        "-device", f"virtio-net-pci,netdev=mgmt,mac=52:54:00:12:34:{spec.index:02x},addr=0x3",
        "-netdev", data,
        "-device",
        f"virtio-net-pci,netdev=data,mac=52:54:00:77:00:{spec.index:02x},addr=0x4"
        f",speed={DATA_LINK_SPEED_MBPS},duplex=full",
        "-fw_cfg", f"name={cfg}/hostname,string={spec.name}",
        "-fw_cfg", f"name={cfg}/data_address,string={spec.data_address}",
        "-fw_cfg", f"name={cfg}/host_key,file={spec.host_key}",
        "-fw_cfg", f"name={cfg}/authorized_keys,file={authorized_keys}",
        "-pidfile", str(spec.pidfile),
        "-daemonize",
    ]  # fmt: skip


def start(spec: GuestSpec, image: Image, accel: str, authorized_keys: Path) -> int:
    """Start the guest in the background; return QEMU's pid."""
    spec.console_log.unlink(missing_ok=True)
    spec.pidfile.unlink(missing_ok=True)
    argv = qemu_argv(spec, image, accel, authorized_keys)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise LabError(f"{QEMU} is not installed; apt-get install qemu-system-x86") from None
    if proc.returncode != 0:
        reason = " | ".join(proc.stderr.strip().splitlines()[-2:]) or f"exit {proc.returncode}"
        raise LabError(f"guest {spec.name}: QEMU did not start: {reason}")
    try:
        return int(spec.pidfile.read_text().strip())
    except (OSError, ValueError):
        raise LabError(f"guest {spec.name}: QEMU started but wrote no pid file {spec.pidfile}") from None


def is_alive(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` is a lab QEMU of this state dir (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return NAME_PREFIX.encode() in cmdline and str(state_dir).encode() in cmdline


def find_stray(state_dir: Path) -> list[int]:
    """Pids of every lab QEMU started from ``state_dir``, whatever the state file says."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_alive(int(entry.name), state_dir):
            pids.append(int(entry.name))
    return pids


def stop(pid: int, state_dir: Path, timeout: float = 10.0) -> None:
    """Terminate a guest's QEMU, killing it if it does not exit within ``timeout``."""
    if not is_alive(pid, state_dir):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid, state_dir):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    while is_alive(pid, state_dir):
        time.sleep(0.05)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def console_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a guest's serial console, without systemd's colour codes."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console output)"
    text = _ANSI.sub("", text).replace("\r", "")
    return "\n".join(line for line in text.strip().splitlines()[-lines:]) or "(no console output)"


def ssh_banner(port: int, timeout: float = 3.0) -> bool:
    """True once sshd in the guest answers with its banner (the forward alone accepts early)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_ssh(specs: list[GuestSpec], pids: dict[str, int], timeout: float, tick: Callable[[str], None]) -> None:
    """Wait until every guest's sshd answers; a guest whose QEMU exits meanwhile is reported with its console."""
    waiting = {spec.name: spec for spec in specs}
    start = time.monotonic()
    while waiting:
        for name, spec in list(waiting.items()):
            if not is_alive(pids[name], spec.state_dir):
                raise LabError(
                    f"guest {name} stopped while booting; console tail ({spec.console_log}):\n"
                    + console_tail(spec.console_log)
                )
            if ssh_banner(spec.ssh_port):
                tick(f"  - {name}: sshd answers on 127.0.0.1:{spec.ssh_port} after {time.monotonic() - start:.0f}s")
                del waiting[name]
        if not waiting:
            return
        if time.monotonic() - start > timeout:
            name, spec = next(iter(waiting.items()))
            raise LabError(
                f"guest {name}: no SSH on 127.0.0.1:{spec.ssh_port} after {timeout:.0f}s;"
                f" console tail ({spec.console_log}):\n" + console_tail(spec.console_log)
            )
        time.sleep(1.0)


def choose_accel(image: Image, cache: Path) -> str:
    """'kvm' if a short probe boot under KVM prints the kernel banner, else 'tcg'.

    The device node is not proof: here /dev/kvm exists but QEMU aborts with
    -cpu host, or the guest never prints anything. The verdict is cached per
    host kernel and QEMU binary.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    qemu = _which(QEMU)
    marker = f"{platform.release()} {qemu} {qemu.stat().st_mtime_ns if qemu else ''}"
    verdict_file = cache / "kvm-probe.json"
    try:
        saved = json.loads(verdict_file.read_text())
        if saved.get("marker") == marker:
            return str(saved["accel"])
    except (OSError, ValueError, KeyError):
        pass
    accel = "kvm" if _kvm_boots(image) else "tcg"
    cache.mkdir(parents=True, exist_ok=True)
    verdict_file.write_text(json.dumps({"marker": marker, "accel": accel}) + "\n")
    return accel


def _kvm_boots(image: Image, timeout: float = 8.0) -> bool:
    argv = [
        QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-display", "none",
        "-no-reboot", "-serial", "stdio", "-kernel", str(image.kernel),
        "-append", "console=ttyS0 panic=-1 rdinit=/fabqual-kvm-probe",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()  # what it printed before the timeout
    finally:
        # Also on Ctrl-C: the probe must not outlive us.
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return b"Linux version" in out


def _which(program: str) -> Path | None:
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / program
        if os.access(candidate, os.X_OK):
            return candidate
    return None
