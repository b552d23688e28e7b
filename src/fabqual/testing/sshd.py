"""A throwaway real OpenSSH server on 127.0.0.1, for testing the SSH executor.

It runs the system's ``/usr/sbin/sshd`` in the foreground with a generated
config, its own host key and one authorized client key, all in a temporary
directory that is removed when the server stops. Nothing outside that directory
is touched, except creating ``/run/sshd`` (sshd's privilege-separation
directory) when it is missing.

    with SshServer() as server:
        executor = SshExecutor("n1", server.host, server.port,
                               key_file=str(server.client_key),
                               known_hosts=str(server.known_hosts))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from fabqual.executors.child import end_child

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

_CONFIG = """\
Port {port}
ListenAddress {host}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel DEBUG1
MaxStartups 100
Subsystem sftp {sftp}
"""


class SshdError(RuntimeError):
    """The test sshd could not be started (a test-infrastructure problem, not a product one)."""


def generate_key(path: Path, comment: str = "fabqual-test") -> Path:
    """Create an unencrypted ed25519 key pair at ``path`` (+ ``.pub``); return ``path``."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def known_hosts_line(host: str, port: int, public_key_file: Path) -> str:
    """One known_hosts line for ``host:port`` holding the key in ``public_key_file``."""
    key_type, key_data = public_key_file.read_text().split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key_type} {key_data}\n"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class SshServer:
    """A running ``sshd -D`` on ``host:port`` that accepts ``client_key`` for ``user``."""

    def __init__(self, host: str = "127.0.0.1", user: str = "root", start_timeout: float = 10.0) -> None:
        self.host = host
        self.user = user
        self.start_timeout = start_timeout
        self.port = 0
        self.dir = Path()
        self._proc: subprocess.Popen[bytes] | None = None

    # Paths inside the temporary directory.
    @property
    def client_key(self) -> Path:
        return self.dir / "client_key"

    @property
    def host_key(self) -> Path:
        return self.dir / "host_key"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file that holds this server's real host key."""
        return self.dir / "known_hosts"

    @property
    def log_file(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise SshdError("sshd is not running")
        return self._proc.pid

    def start(self) -> SshServer:
        if not os.access(SSHD, os.X_OK):
            raise SshdError(f"{SSHD} not found; install it with: apt-get install openssh-server")
        # sshd refuses to start without its privilege-separation directory.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="fabqual-sshd-"))
        try:
            self._start_in_dir()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_in_dir(self) -> None:
        generate_key(self.host_key, "fabqual-test-host")
        generate_key(self.client_key, "fabqual-test-client")
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.dir / "authorized_keys")
        self.port = free_port(self.host)
        self.known_hosts.write_text(known_hosts_line(self.host, self.port, self.host_key.with_suffix(".pub")))
        config = self.dir / "sshd_config"
        config.write_text(
            _CONFIG.format(
                port=self.port,
                host=self.host,
                host_key=self.host_key,
                pid_file=self.dir / "sshd.pid",
                authorized_keys=self.dir / "authorized_keys",
                sftp=SFTP_SERVER,
            )
        )
        with self.log_file.open("wb") as log:
            # -D: stay in the foreground so we own the process; -E: log to our file (with -e, debug
            # lines of the session process would leak into the commands stderr).
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-E", str(self.log_file), "-f", str(config)], stdout=log, stderr=log
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Wait until sshd answers with its banner (it listens only after reading its config)."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise SshdError(f"sshd exited {self._proc.returncode}: {self.log_file.read_text().strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise SshdError(f"sshd did not answer on {self.host}:{self.port} within {self.start_timeout:.0f}s")

    def session_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listener): one per open connection."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process went away while we looked
            if int(fields[1]) == self.pid:  # fields[1] is the parent pid
                children.append(int(stat.parent.name))
        return children

    def drop_connections(self) -> None:
        """Kill every connection's sshd process, as a server reboot or a network cut would."""
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while self.session_pids() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None:
            self.drop_connections()
            end_child(self._proc, grace_s=5)
            self._proc = None
        if self.dir != Path() and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
