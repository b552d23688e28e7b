"""VMware's vCenter simulator (govmomi ``vcsim``) as the emulated lab's vCenter.

Debian ships govmomi's simulator library as source (``golang-github-vmware-govmomi-dev``)
but not the ``vcsim`` command, so fabqual builds its own small launcher
(``vcsim_launcher/main.go``) against the packaged sources, offline, in GOPATH mode.
The binary is cached under ``${FABQUAL_CACHE:-~/.cache/fabqual}/vcsim/`` keyed by the
Debian package version and the launcher's source hash, so it is built once.

The simulator is started with API version 7.0.3.0: pyvmomi matches that string
exactly and then keeps the 6.7+ PVRDMA fields (``VirtualVmxnet3Vrdma.deviceProtocol``);
with vcsim's default ``6.5`` it silently drops them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import selectors
import shutil
import ssl
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fabqual.drivers.rundir import process_start
from fabqual.errors import LabError
from fabqual.executors.base import log_step
from fabqual.executors.child import end_child

log = logging.getLogger("fabqual.vsphere")

GOVMOMI_PACKAGE = "golang-github-vmware-govmomi-dev"
GOPATH = Path("/usr/share/gocode")
LAUNCHER_SOURCE = Path(__file__).with_name("vcsim_launcher") / "main.go"
API_VERSION = "7.0.3.0"
# The simulator reads its password from this variable (its environment is private to
# our user; its command line is readable by everyone in /proc/<pid>/cmdline).
PASSWORD_ENV = "FABQUAL_VCSIM_PASSWORD"
_INSTALL_HINT = "run: apt-get install -y golang-go golang-github-vmware-govmomi-dev"


def cache_root() -> Path:
    """Where fabqual keeps built artefacts (``$FABQUAL_CACHE`` or ``~/.cache/fabqual``)."""
    return Path(os.environ.get("FABQUAL_CACHE") or Path.home() / ".cache" / "fabqual")


# The controller-side directories (build tree; certificate and log of a running simulator) are named
# after the process that made them: a process killed before its cleanup leaves one that the next
# simulator start recognises as dead (pid gone or reused) and removes.
_OWNED_DIR = re.compile(r"^fabqual-vcsim-(?:build|run)-(\d+)-(\d*)\.[^/]*$")


def _owned_tempdir(kind: str) -> tempfile.TemporaryDirectory[str]:
    pid = os.getpid()
    return tempfile.TemporaryDirectory(prefix=f"fabqual-vcsim-{kind}-{pid}-{process_start(pid)}.")


def sweep_dead_dirs(root: Path | None = None) -> list[Path]:
    """Remove this user's simulator directories whose making process is gone; return them.

    A live owner's (same pid, same start time) is left alone, and so is anything not
    named by :func:`_owned_tempdir`, not a real directory, or another user's.
    """
    root = root or Path(tempfile.gettempdir())
    removed = []
    for entry in sorted(root.glob("fabqual-vcsim-*")):
        match = _OWNED_DIR.match(entry.name)
        if match is None:
            continue
        try:
            st = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        pid, started = int(match.group(1)), match.group(2)
        if started and process_start(pid) == started:
            continue
        log_step("localhost", f"remove {entry}: left by vcsim's starter pid {pid}, which is gone")
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _package_version() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", GOVMOMI_PACKAGE],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"vcsim: dpkg-query not found ({exc}); vcsim is built from Debian packages only") from exc
    if out.returncode != 0 or not out.stdout.strip():
        raise LabError(f"vcsim: Debian package {GOVMOMI_PACKAGE} is not installed; {_INSTALL_HINT}")
    return out.stdout.strip()


def binary_path() -> Path:
    """Path of the cached binary for the installed package and the current launcher source."""
    version = _package_version()
    digest = hashlib.sha256(LAUNCHER_SOURCE.read_bytes()).hexdigest()[:12]
    return cache_root() / "vcsim" / f"{version}-{digest}" / "vcsim"


def build_vcsim() -> Path:
    """Build the launcher once (idempotent) and return the binary's path.

    Offline: GOPATH mode against Debian's sources, ``GOPROXY=off``; a failure
    raises one :class:`LabError` line with the compiler's last words.
    """
    target = binary_path()
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        raise LabError(f"vcsim: the Go toolchain (`go`) is not installed; {_INSTALL_HINT}")
    if not (GOPATH / "src/github.com/vmware/govmomi/simulator").is_dir():
        raise LabError(f"vcsim: {GOPATH}/src/github.com/vmware/govmomi/simulator is missing; {_INSTALL_HINT}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A lock, because parallel pytest workers may all want the binary at once.
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        log_step("localhost", f"building vcsim from {GOVMOMI_PACKAGE} {target.parent.name} (about 15-50 s)")
        started = time.monotonic()
        sweep_dead_dirs()
        with _owned_tempdir("build") as work:
            shutil.copy(LAUNCHER_SOURCE, Path(work) / "main.go")
            env = {
                **os.environ,
                "GO111MODULE": "off",  # GOPATH mode: the Debian tree is the whole dependency set
                "GOPATH": str(GOPATH),
                "GOPROXY": "off",
                "GOFLAGS": "",
                "GOCACHE": str(cache_root() / "vcsim" / "gocache"),
                "CGO_ENABLED": "0",
            }
            tmp_binary = target.with_suffix(".tmp")
            result = subprocess.run(
                [go, "build", "-o", str(tmp_binary), "."],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise LabError(f"vcsim: `go build` of {LAUNCHER_SOURCE.name} failed: {last}")
            tmp_binary.replace(target)
        log_step("localhost", f"built vcsim in {time.monotonic() - started:.1f}s: {target}")
    return target


@dataclass(frozen=True)
class VcsimInstance:
    """A running simulator: where it listens and how to trust its certificate."""

    address: str
    port: int
    user: str
    password: str
    cert_path: Path
    thumbprint: str  # SHA-1 of the certificate, colon separated, as vSphere shows it
    pid: int

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}/sdk"


def _thumbprint(pem: str) -> str:
    digest = hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _read_banner(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.2):
            line = proc.stdout.readline()
            if line.startswith("URL="):
                return line.strip()
            if not line:  # EOF: the simulator died
                break
        if proc.poll() is not None:
            break
    return ""


def _wait_for_sdk(instance: VcsimInstance, timeout: float) -> None:
    ctx = ssl.create_default_context(cafile=str(instance.cert_path))
    url = f"{instance.url}/vimServiceVersions.xml"
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as reply:
                if b"urn:vim25" in reply.read():
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise LabError(f"vcsim on {instance.address}:{instance.port}: SDK did not answer within {timeout:.0f}s ({last})")


@contextlib.contextmanager
def running_vcsim(
    port: int = 0,
    user: str = "fabqual",
    password: str = "fabqual-vcsim",
    *,
    hosts: int = 2,
    vms: int = 2,
    idle_timeout: float | None = None,
    start_timeout: float = 30.0,
) -> Iterator[VcsimInstance]:
    """Start vcsim on 127.0.0.1 (port 0: any free port), yield it once its SDK answers, stop it.

    Inventory: one datacenter ``DC0`` with cluster ``DC0_C0`` of ``hosts`` hosts
    (``DC0_C0_H0``…) and ``vms`` VMs spread over them; no switch beyond ``VM Network``.
    ``idle_timeout`` makes sessions expire, to exercise reconnects.
    """
    binary = build_vcsim()
    sweep_dead_dirs()
    with _owned_tempdir("run") as run_dir:
        cert = Path(run_dir) / "vcsim.pem"
        argv = [
            str(binary),
            f"-l=127.0.0.1:{port}",
            f"-username={user}",
            f"-password-env={PASSWORD_ENV}",  # the password stays off /proc/<pid>/cmdline
            f"-api-version={API_VERSION}",
            f"-host={hosts}",
            f"-vm={vms}",
            f"-cert-out={cert}",
        ]
        if idle_timeout:
            argv.append(f"-idle={idle_timeout}s")
        log_step("localhost", f"starting vcsim on 127.0.0.1:{port or 'any'}")
        # stdin stays open: the launcher exits when it closes, so it never outlives us.
        stderr = open(Path(run_dir) / "vcsim.log", "w")  # noqa: SIM115 - closed in finally
        env = {**os.environ, PASSWORD_ENV: password}
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            banner = _read_banner(proc, start_timeout)
            match = re.match(r"URL=https://[^@]*@?([\d.]+):(\d+)/sdk PID=(\d+)", banner)
            if not match:
                proc.kill()
                proc.wait()
                tail = (Path(run_dir) / "vcsim.log").read_text().strip().splitlines()[-1:] or ["(no output)"]
                raise LabError(f"vcsim did not start on 127.0.0.1:{port or 'any'}: {tail[0]}")
            instance = VcsimInstance(
                address=match.group(1),
                port=int(match.group(2)),
                user=user,
                password=password,
                cert_path=cert,
                thumbprint=_thumbprint(cert.read_text()),
                pid=proc.pid,
            )
            _wait_for_sdk(instance, start_timeout)
            yield instance
        finally:
            if proc.poll() is None:
                log_step("localhost", f"stopping vcsim (pid {proc.pid})")
                end_child(proc, grace_s=10)
            if proc.stdin:
                proc.stdin.close()
            if proc.stdout:
                proc.stdout.close()
            stderr.close()
