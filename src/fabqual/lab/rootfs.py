"""The guest's root file system: mmdebstrap of one release, the lab's files, a zstd cpio."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from fabqual.errors import LabError
from fabqual.lab import guest
from fabqual.lab.kernel_modules import shell_quote
from fabqual.lab.packages import purge_script
from fabqual.lab.releases import run

# Trimmed from the guest: documentation and translations nobody reads in a lab VM.
TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/lib/udev/hwdb.d",  # 22 MB with hwdb.bin: device names only, nothing the lab uses
    "usr/lib/x86_64-linux-gnu/gconv",  # iconv charsets; no lab tool converts
)
_UNIT_DIRS = ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")


def bootstrap(release: str, packages: tuple[str, ...], sources: Path, root: Path, env: dict[str, str]) -> None:
    """``mmdebstrap --variant=minbase`` of ``release`` with ``packages``, docs left out, perl purged."""
    run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--quiet",
            "--aptopt=APT::Install-Recommends false",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            f"--include={','.join(packages)}",
            f'--customize-hook=chroot "$1" sh -c {shell_quote(purge_script())}',
            release,
            str(root),
            str(sources),
        ],
        f"build the Debian {release} guest root file system with mmdebstrap",
        env=env,
    )


def configure(root: Path) -> dict[str, list[str]]:
    """Write the lab's files into the guest and set its units; what was not there to change, by kind."""
    for rel, (mode, text) in guest.FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # etc/hosts etc. may be symlinks or hold defaults
        path.write_text(text)
        path.chmod(mode)
    # Host keys made at package install would be shared by both guests: each gets its own at boot.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    for rel in TRIM:
        shutil.rmtree(root / rel, ignore_errors=True)
    (root / "usr/lib/udev/hwdb.bin").unlink(missing_ok=True)
    (root / "etc" / "machine-id").write_text("")  # systemd makes a fresh one per boot
    (root / "etc" / "hostname").write_text("fabqual-guest\n")
    chroot = ["chroot", str(root), "systemctl"]
    run([*chroot, "enable", *guest.ENABLED_UNITS], "enable the guest's services")
    # A release may not have every unit (another systemd, another package split): only those it has.
    present = [unit for unit in guest.DISABLED_UNITS if _has_unit(root, unit)]
    if present:
        run([*chroot, "disable", *present], "disable the guest's unneeded services")
    run([*chroot, "mask", *guest.MASKED_UNITS], "mask the guest's unneeded units")
    console = root / "dev" / "console"
    if not console.exists():
        os.mknod(console, 0o600 | 0o020000, os.makedev(5, 1))
    return {"units_not_present": [unit for unit in guest.DISABLED_UNITS if unit not in present]}


def _has_unit(root: Path, unit: str) -> bool:
    return any((root / directory / unit).exists() for directory in _UNIT_DIRS)


def pack(root: Path, dest: Path) -> None:
    """newc cpio of ``root``, zstd-compressed (the kernel unpacks it as its root file system)."""
    with dest.open("wb") as out:
        find = subprocess.Popen(["find", ".", "-print0"], cwd=root, stdout=subprocess.PIPE)
        cpio = subprocess.Popen(
            ["cpio", "--null", "--create", "--format=newc", "--quiet"],
            cwd=root,
            stdin=find.stdout,
            stdout=subprocess.PIPE,
        )
        assert find.stdout is not None and cpio.stdout is not None
        find.stdout.close()
        zstd = subprocess.Popen(["zstd", "-q", "-T0", "-6"], stdin=cpio.stdout, stdout=out)
        cpio.stdout.close()
        codes = (zstd.wait(), cpio.wait(), find.wait())
    if any(codes):
        raise LabError(f"packing the initramfs {dest} failed (find/cpio/zstd exit {codes[2]}/{codes[1]}/{codes[0]})")


__all__ = ["TRIM", "bootstrap", "configure", "pack"]
