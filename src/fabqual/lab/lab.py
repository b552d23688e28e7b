"""Lifecycle of the emulated lab: prepare, bring up, report, tear down.

State lives in ``${FABQUAL_CACHE:-~/.cache/fabqual}/lab/run/``: ``state.json``
(ports, pids, the host sysctls changed), console logs, ``known_hosts``, the
guests' host keys and ``topology.yaml``. The lab's own SSH key is kept one
level up (``lab/id_ed25519``) so it survives ``down``. A lock file serializes
``up`` and ``down``; the QEMU processes outlive the command that started them
and are found again through ``state.json``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabqual.drivers.rundir import RunOwner
from fabqual.errors import FabqualError, LabError
from fabqual.executors.base import log_step
from fabqual.lab import vm
from fabqual.lab.image import Image, cache_root, ensure_image
from fabqual.lab.releases import Pair
from fabqual.lab.topology import INI_DATA, TGT_DATA, lab_topology, write_topology

GUESTS: tuple[tuple[str, str], ...] = (("tgt", TGT_DATA), ("ini", INI_DATA))
# Socket buffers for the UDP data link: with the 208 KiB default, bursts drop
# frames and FCoE (no recovery) fails 128 KiB SCSI writes.
SOCKET_BUFFER = 4 * 1024 * 1024
SYSCTLS = ("net.core.rmem_default", "net.core.wmem_default")
BOOT_TIMEOUT = 420.0  # TCG on two shared cores; measured 37-50 s idle
# The releases of a lab booted without a pair given (pytest's own lab, the self-tests): TARGET:HOST.
PAIR_ENV = "FABQUAL_LAB_PAIR"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GuestStatus:
    name: str
    pid: int | None
    alive: bool
    ssh_port: int
    console_log: Path


@dataclass(frozen=True)
class LabStatus:
    """What ``fabqual lab status`` shows."""

    state: str  # "down", "booting", "running" or "broken" (some guest gone)
    guests: tuple[GuestStatus, ...]
    topology: Path | None
    accel: str | None
    detail: str = ""
    pair: Pair | None = None


class EmulatedLab:
    """The two-guest rack in a box. Every method is safe to call in any state."""

    def __init__(self, cache: Path | None = None, progress: Progress | None = None, pair: Pair | None = None) -> None:
        """``pair``: the guests' releases; None takes ``$FABQUAL_LAB_PAIR``, else the running lab's, else
        bookworm on both."""
        self.cache = (cache or cache_root()) / "lab"
        self._asked = pair if pair is not None else _pair_from_env()
        self.run_dir = self.cache / "run"
        self.key_file = self.cache / "id_ed25519"
        self.known_hosts = self.run_dir / "known_hosts"
        self.topology_path = self.run_dir / "topology.yaml"
        self._state_file = self.run_dir / "state.json"
        self._progress: Progress = progress or (lambda _text: None)
        self.booted = False  # True once this object booted the guests (not found them running)

    # -- public -------------------------------------------------------------

    def prepare(self) -> Path:
        """Write the topology for the lab (ports chosen, keys made) without booting anything."""
        with self._lock(wait=True):
            return self._prepare()

    def ensure_up(self, *, wait: bool = False) -> Path:
        """Boot the lab unless it runs; return its topology path. Idempotent.

        If another process is booting it, raise LabError saying so, or with
        ``wait=True`` wait for that boot and use its lab.
        """
        if self.is_running():
            self._check_pair()
            return self.topology_path
        with self._lock(wait=wait):
            if self.is_running():
                self._check_pair()
                return self.topology_path
            if self._read_state().get("pids"):
                # A guest died (or an earlier up was killed): stop what is left before booting anew.
                self._progress("the lab was broken; stopping what is left of it first")
                self._teardown()
            self._prepare()
            try:
                self._boot()
            except BaseException:
                # Ctrl-C or a failed boot: leave nothing running, restore the host.
                self._teardown()
                raise
        return self.topology_path

    def down(self) -> None:
        """Stop both guests and restore the host sysctls; nothing of the lab keeps running."""
        with self._lock(wait=True):
            self._teardown()

    def is_running(self) -> bool:
        return self.status().state == "running"

    @property
    def pair(self) -> Pair:
        """The releases this lab boots (or, when none was asked for, the running lab's)."""
        if self._asked is not None:
            return self._asked
        state = self._read_state()
        running = state.get("pair") if state.get("pids") else None
        return Pair.parse(running) if running else Pair()

    def _check_pair(self) -> None:
        running = self._read_state().get("pair") or Pair().name
        if self._asked is not None and self._asked.name != running:
            raise LabError(
                f"the emulated lab runs {running} (target:host), not {self._asked.name};"
                " run `fabqual lab down` first, or ask for the running pair"
            )

    def claim(self, session: RunOwner | None) -> None:
        """Record the session that will stop the lab at its end (None: nobody, as after `fabqual lab up`)."""
        with self._lock(wait=True):
            state = self._read_state()
            if not state.get("pids"):
                return
            if session is None:
                state.pop("session", None)
            else:
                state["session"] = session.to_json()
            self._write_state(state)

    def orphaned(self) -> RunOwner | None:
        """The session that booted the running lab and died before stopping it (killed), if so."""
        owner = RunOwner.from_json(str(self._read_state().get("session", "")))
        return owner if owner is not None and owner.alive() is False else None

    def healthy(self) -> bool:
        """Every guest answers a command over SSH (with its host key checked)."""
        from fabqual.executors.ssh import SshExecutor
        from fabqual.topology import load_topology

        try:
            topology = load_topology(self.topology_path)
            for name, _address in GUESTS:
                executor = SshExecutor.for_node(topology.node(name))
                try:
                    executor.run("true", timeout=30)
                finally:
                    executor.close()
        except FabqualError:
            return False
        return True

    def status(self) -> LabStatus:
        state = self._read_state()
        pids: dict[str, int] = state.get("pids", {})
        ports: dict[str, int] = state.get("ssh_ports", {})
        guests = tuple(
            GuestStatus(
                name=name,
                pid=pids.get(name),
                alive=bool(pids.get(name)) and vm.is_alive(pids[name], self.run_dir),
                ssh_port=ports.get(name, 0),
                console_log=self.run_dir / f"{name}.console.log",
            )
            for name, _address in GUESTS
        )
        pair = Pair.parse(state["pair"]) if state.get("pair") else None
        if not pids:
            return LabStatus("down", guests, None, None)
        dead = [g for g in guests if not g.alive]
        if not dead:
            # "booting" also covers an `up` killed mid-boot: the next ensure_up() stops and reboots it.
            phase = "running" if state.get("up") else "booting"
            return LabStatus(phase, guests, self.topology_path, state.get("accel"), pair=pair)
        detail = "\n".join(
            f"guest {g.name} (pid {g.pid}) is not running; console tail ({g.console_log}):\n"
            + vm.console_tail(g.console_log)
            for g in dead
        )
        return LabStatus("broken", guests, self.topology_path, state.get("accel"), detail, pair)

    # -- steps --------------------------------------------------------------

    def _prepare(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self._read_state()
        if state.get("pids") and self.status().state == "running":
            return self.topology_path
        self._ensure_key(self.key_file, "fabqual-lab")
        ports = state.get("ports")
        if not ports or not all(_port_free(p, kind) for p, kind in _port_kinds(ports)):
            ports = _choose_ports()
        for name, _address in GUESTS:
            self._ensure_key(self.run_dir / f"{name}_ssh_host_ed25519_key", f"fabqual-lab-{name}")
        self._write_known_hosts(ports)
        ssh_ports = {name: ports[f"{name}_ssh"] for name, _a in GUESTS}
        consoles = {name: self.run_dir / f"{name}.console.log" for name, _a in GUESTS}
        pair = self.pair
        write_topology(self.topology_path, lab_topology(ssh_ports, self.key_file, self.known_hosts, consoles, pair))
        self._write_state({"ports": ports, "ssh_ports": ssh_ports, "pair": pair.name})
        return self.topology_path

    def _boot(self) -> None:
        state = self._read_state()
        ports: dict[str, int] = state["ports"]
        for port, kind in _port_kinds(ports):
            if not _port_free(port, kind):
                raise LabError(
                    f"port 127.0.0.1:{port}/{kind} chosen for the lab is now in use; run `fabqual lab down` and retry"
                )
        pair = Pair.parse(state["pair"])
        # One image per release, built one after the other (they share the CPUs).
        built = {release: ensure_image(release, self._progress) for release in dict.fromkeys((pair.target, pair.host))}
        images = {name: built[pair.for_guest(name)] for name, _address in GUESTS}
        accel = vm.choose_accel(images["tgt"], cache_root())
        start = time.monotonic()
        # The old values are in the state file before the first change: a kill in between still restores them.
        state["sysctl"] = _sysctls_below()
        state["accel"] = accel
        state["images"] = {name: f"{image.release}/{image.key}" for name, image in images.items()}
        self._write_state(state)
        _raise_sysctls(state["sysctl"])
        specs = self._specs(ports)
        pids: dict[str, int] = {}
        for spec in specs:
            image = images[spec.name]
            log_step(spec.name, f"boot emulated guest (Debian {image.release}, {accel}, ssh 127.0.0.1:{spec.ssh_port})")
            pids[spec.name] = vm.start(spec, image, accel, self.key_file.with_suffix(".pub"))
            state["pids"] = pids
            self._write_state(state)
        self._progress(f"booting guests {', '.join(pids)} under QEMU ({accel}); consoles in {self.run_dir}")
        vm.wait_for_ssh(specs, pids, BOOT_TIMEOUT, self._progress)
        self._check_commands(images)
        state["up"] = True
        self.booted = True
        state["boot_seconds"] = round(time.monotonic() - start, 1)
        self._write_state(state)
        self._progress(f"lab up in {state['boot_seconds']:.0f}s; topology {self.topology_path}")

    def _check_commands(self, images: dict[str, Image]) -> None:
        """A real command through fabqual's SSH executor, with host keys checked, on every guest."""
        from fabqual.executors.ssh import SshExecutor
        from fabqual.topology import load_topology

        topology = load_topology(self.topology_path)
        for name, _address in GUESTS:
            executor = SshExecutor.for_node(topology.node(name))
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        result = executor.run("uname -r; hostname", timeout=30)
                        break
                    except FabqualError:
                        # sshd answers a moment before logins work (host key setup, PAM).
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(2)
            finally:
                executor.close()
            kernel, _, host = result.stdout.strip().partition("\n")
            if kernel != images[name].abi or host != name:
                raise LabError(
                    f"guest {name}: expected kernel {images[name].abi} and hostname {name}, got {kernel!r} and {host!r}"
                )

    def _teardown(self) -> None:
        state = self._read_state()
        pids = set(state.get("pids", {}).values()) | set(vm.find_stray(self.run_dir))
        for pid in pids:
            log_step("lab", f"stop emulated guest (QEMU pid {pid})")
            vm.stop(pid, self.run_dir)
        _restore_sysctls(state.get("sysctl", {}))
        for name, _address in GUESTS:
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        # Keep the ports so the next prepare() writes the same topology; drop everything else.
        kept: dict[str, Any] = {key: state[key] for key in ("ports", "ssh_ports") if key in state}
        if self.run_dir.exists():
            self._write_state(kept)

    # -- helpers ------------------------------------------------------------

    def _specs(self, ports: dict[str, int]) -> list[vm.GuestSpec]:
        (tgt, tgt_addr), (ini, ini_addr) = GUESTS
        return [
            vm.GuestSpec(tgt, 1, ports["tgt_ssh"], ports["tgt_data"], ports["ini_data"], tgt_addr, self.run_dir),
            vm.GuestSpec(ini, 2, ports["ini_ssh"], ports["ini_data"], ports["tgt_data"], ini_addr, self.run_dir),
        ]

    def _ensure_key(self, path: Path, comment: str) -> None:
        if path.exists() and path.with_suffix(".pub").exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        proc = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LabError(f"cannot make the SSH key {path}: {proc.stderr.strip() or proc.returncode}")

    def _write_known_hosts(self, ports: dict[str, int]) -> None:
        lines = []
        for name, _address in GUESTS:
            kind, key, *_ = (self.run_dir / f"{name}_ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{ports[f'{name}_ssh']} {kind} {key}\n")
        self.known_hosts.write_text("".join(lines))

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self._state_file)

    @contextmanager
    def _lock(self, *, wait: bool) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "lock"
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise LabError(
                    f"the emulated lab is being brought up by another process (pid {holder}); "
                    "wait for it, or run `fabqual lab status`"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)


def _pair_from_env() -> Pair | None:
    text = os.environ.get(PAIR_ENV, "").strip()
    if not text:
        return None
    try:
        return Pair.parse(text)
    except LabError as error:
        raise LabError(f"${PAIR_ENV}: {error}") from None


def _port_kinds(ports: dict[str, int]) -> list[tuple[int, str]]:
    return [(port, "udp" if key.endswith("_data") else "tcp") for key, port in ports.items()]


def _choose_ports() -> dict[str, int]:
    """Free ports for the two SSH forwards (TCP) and the two ends of the data link (UDP)."""
    ports: dict[str, int] = {}
    for name, _address in GUESTS:
        ports[f"{name}_ssh"] = _free_port(socket.SOCK_STREAM, set(ports.values()))
        ports[f"{name}_data"] = _free_port(socket.SOCK_DGRAM, set(ports.values()))
    return ports


def _free_port(kind: int, taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def _port_free(port: int, kind: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _sysctls_below() -> dict[str, int]:
    """The socket-buffer sysctls below SOCKET_BUFFER, with their values (what to restore)."""
    values = {name: int(_sysctl_path(name).read_text()) for name in SYSCTLS}
    return {name: value for name, value in values.items() if value < SOCKET_BUFFER}


def _raise_sysctls(below: dict[str, int]) -> None:
    """Raise the default socket buffers in ``below`` to SOCKET_BUFFER."""
    for name, current in below.items():
        try:
            _sysctl_path(name).write_text(str(SOCKET_BUFFER))
        except OSError as error:
            raise LabError(f"cannot raise {name} to {SOCKET_BUFFER} ({error.strerror}); run as root") from None
        log_step("localhost", f"sysctl {name}={SOCKET_BUFFER} (was {current})")


def _restore_sysctls(saved: dict[str, int]) -> None:
    for name, value in saved.items():
        path = _sysctl_path(name)
        # Only undo our own change; if someone set another value since, leave it.
        if int(path.read_text()) == SOCKET_BUFFER:
            path.write_text(str(value))
            log_step("localhost", f"sysctl {name}={value} (restored)")
