"""The emulated lab's guest image: Debian 12 kernel + a root file system in a cpio initramfs.

Built on first use and cached under ``${FABQUAL_CACHE:-~/.cache/fabqual}/images/<key>``,
where the key hashes every input (packages, modules, guest files, builder
version, Debian kernel ABI and version), so a change of any of them builds a
new image. Steps:

1. ``mmdebstrap --variant=minbase`` the guest root file system from the host's
   own apt sources (no mirror is named here);
2. fetch Debian's kernel package, keep ``vmlinuz`` and only the modules the lab
   needs plus what ``modprobe --show-depends`` says they depend on;
3. build ``nvme-fcloop`` and ``nvme-loop`` (Debian leaves them out) and a
   patched ``nvme-fc`` (PATCHES) from ``linux-source-6.1`` against the matching
   ``linux-headers`` in a throwaway build chroot, so compilers never enter the
   guest; they go to ``updates/``, which depmod prefers over Debian's own;
4. write the guest's files (guest.py), ``depmod``, pack a zstd cpio.

Must run as root (mmdebstrap in root mode, chroot, device nodes).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fabqual.errors import LabError
from fabqual.lab import guest

# Bump when the way the image is built changes (the inputs below are hashed anyway).
BUILDER_VERSION = 5
SUITE = "bookworm"

GUEST_PACKAGES: tuple[str, ...] = (
    # Satisfies init-system-helpers' "usrmerge | usr-is-merged" so that usrmerge,
    # which the essential phase installs and which drags in perl (~50 MB), can go.
    "usr-is-merged",
    "systemd",
    "systemd-sysv",
    "udev",
    "openssh-server",
    "iproute2",
    "kmod",
    "rdma-core",
    "ibverbs-utils",
    "ibverbs-providers",
    "perftest",
    "fio",
    "nvme-cli",
    "iperf3",
    "iputils-ping",
    "sg3-utils",
    "python3",
    "procps",
    "tcmu-runner",
    "dmsetup",  # a device-mapper holder over a scratch device: the scratch-safety self-test
)

# Kernel modules the lab uses; their hard dependencies are added by modprobe.
GUEST_MODULES: tuple[str, ...] = (
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "qemu_fw_cfg",
    "configfs",
    "nvme",
    "nvme-core",
    "nvme-fabrics",
    "nvme-fc",
    "nvme-rdma",
    "nvme-tcp",
    "nvmet",
    "nvmet-rdma",
    "nvmet-fc",
    "nvmet-tcp",
    "rdma_rxe",
    "crc32_generic",  # soft dependency of rdma_rxe (crypto "crc32")
    "crc32-pclmul",
    "crc32c_generic",
    "crc32c-intel",
    "rdma_ucm",
    "ib_uverbs",
    "ib_umad",
    "target_core_mod",
    "target_core_user",
    "target_core_iblock",
    "target_core_file",
    "target_core_pscsi",
    "tcm_loop",
    "tcm_fc",
    "tcm_qla2xxx",  # LIO on QLogic HBAs (ipofc carrier: fc); no HBA here, it only loads
    "fcoe",
    "libfcoe",
    "libfc",
    "scsi_transport_fc",
    "qla2xxx",  # needs nvme-fc: loads against the patched out-of-tree build
    "sd_mod",
    "sg",
    "tun",
    "null_blk",
    "loop",
    "ext4",  # scratch-safety self-test: a file system on a scratch device, mounted
    "dm_mod",  # ... and a device-mapper holder over one
    "scsi_debug",  # ... and a SCSI disk udev names under /dev/disk/by-id (wwn-, scsi-)
    "uio",
    "8021q",
    "autofs4",
)

# Built out of tree: module name -> source file under drivers/nvme/.
OOT_MODULES: dict[str, str] = {
    "nvme-fcloop": "target/fcloop.c",
    "nvme-loop": "target/loop.c",
    # Debian's own nvme-fc crashes when a controller is removed; see the patch.
    "nvme-fc": "host/fc.c",
}

# Applied with ``patch -p1`` to linux-source-6.1 before the modules above are built.
PATCHES: tuple[Path, ...] = (Path(__file__).with_name("patches") / "nvme-fc-admin-queue-lifetime.patch",)

# usrmerge and the perl it needs: the essential phase installs them (and marks them
# manual, so autoremove keeps them); nothing in the lab uses them. dpkg refuses if
# anything else came to depend on them, so the build fails loudly rather than
# losing a package.
_PERL = (
    "usrmerge",
    "libfile-find-rule-perl",
    "libnumber-compare-perl",
    "libtext-glob-perl",
    "perl",
    "perl-modules-5.36",
    "libperl5.36",
)

# Trimmed from the guest: documentation and translations nobody reads in a lab VM.
_TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/lib/udev/hwdb.d",  # 22 MB with hwdb.bin: device names only, nothing the lab uses
    "usr/lib/x86_64-linux-gnu/gconv",  # iconv charsets; no lab tool converts
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Image:
    """A built guest image: boot it with ``-kernel kernel -initrd initrd``."""

    directory: Path
    kernel: Path
    initrd: Path
    abi: str
    kernel_version: str
    key: str

    def info(self) -> dict[str, object]:
        info: dict[str, object] = json.loads((self.directory / "image.json").read_text())
        return info


def cache_root() -> Path:
    """``$FABQUAL_CACHE``, else ``~/.cache/fabqual``."""
    return Path(os.environ.get("FABQUAL_CACHE") or Path.home() / ".cache" / "fabqual").expanduser()


def kernel_package() -> tuple[str, str]:
    """(ABI, version) of Debian's current kernel, e.g. ("6.1.0-56-amd64", "6.1.192-2"), from the host's apt."""
    depends = _run(["apt-cache", "depends", "linux-image-amd64"], "ask apt which kernel linux-image-amd64 is")
    match = re.search(r"Depends: linux-image-(\S+)", depends)
    if not match:
        raise LabError("apt knows no linux-image-amd64 on this host; run `apt-get update` and retry")
    abi = match.group(1)
    policy = _run(["apt-cache", "policy", f"linux-image-{abi}"], f"ask apt for linux-image-{abi}")
    version = re.search(r"Candidate: (\S+)", policy)
    if not version or version.group(1) == "(none)":
        raise LabError(f"apt has no candidate for linux-image-{abi}; run `apt-get update` and retry")
    return abi, version.group(1)


def image_key(abi: str, version: str) -> str:
    """Hash of every input of the image; a new value means a new build."""
    inputs = {
        "builder": BUILDER_VERSION,
        "suite": SUITE,
        "packages": list(GUEST_PACKAGES),  # order matters to apt (see usr-is-merged)
        "modules": sorted(GUEST_MODULES),
        "oot": OOT_MODULES,
        "patches": {patch.name: _read_patch(patch) for patch in PATCHES},
        "files": guest.FILES,
        "enabled": guest.ENABLED_UNITS,
        "disabled": guest.DISABLED_UNITS,
        "masked": guest.MASKED_UNITS,
        "abi": abi,
        "kernel_version": version,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def cached_image() -> Image | None:
    """The image for the current inputs if it is already built, without building."""
    abi, version = kernel_package()
    return _image_at(cache_root() / "images" / image_key(abi, version), abi, version)


def ensure_image(progress: Progress = print) -> Image:
    """The guest image for the current inputs, building it first if it is not cached."""
    if os.geteuid() != 0:
        raise LabError("building the lab image needs root (mmdebstrap, chroot); run fabqual as root")
    abi, version = kernel_package()
    key = image_key(abi, version)
    images = cache_root() / "images"
    images.mkdir(parents=True, exist_ok=True)
    with _locked(images / ".build.lock", progress):
        image = _image_at(images / key, abi, version)
        if image is not None:
            return image
        progress(f"building lab image {key} (Debian {SUITE}, kernel {abi} {version}) under {images}")
        start = time.monotonic()
        partial = images / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            _build(partial, abi, version, progress)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        final = images / key
        partial.rename(final)
        _prune(images, keep=key, progress=progress)
        image = _image_at(final, abi, version)
        assert image is not None
        progress(f"lab image ready in {time.monotonic() - start:.0f}s: {_size(image.initrd)} initramfs")
        return image


def _prune(images: Path, keep: str, progress: Progress) -> None:
    """Remove images built from older inputs: only the current one is ever booted again.

    A running guest already has its kernel and initramfs in memory, so removing them is safe.
    """
    for old in images.iterdir():
        if old.name != keep and (old / "image.json").is_file():
            progress(f"removing outdated lab image {old.name} ({_size(old)})")
            shutil.rmtree(old, ignore_errors=True)


def _image_at(directory: Path, abi: str, version: str) -> Image | None:
    if not (directory / "image.json").is_file():
        return None
    return Image(directory, directory / "vmlinuz", directory / "initrd.cpio.zst", abi, version, directory.name)


def _build(out: Path, abi: str, version: str, progress: Progress) -> None:
    work = out / "work"
    work.mkdir()
    # mmdebstrap and apt put their temporary files under TMPDIR: keep them in the cache.
    env = {**os.environ, "TMPDIR": str(work), "LC_ALL": "C.UTF-8"}
    sources = _write_sources(work / "host.sources")
    root = work / "root"
    timings: dict[str, float] = {}

    with _step("guest root file system (mmdebstrap)", progress, timings) as note:
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                "--aptopt=APT::Install-Recommends false",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                f"--include={','.join(GUEST_PACKAGES)}",
                f'--customize-hook=chroot "$1" dpkg --purge {" ".join(_PERL)}',
                SUITE,
                str(root),
                str(sources),
            ],
            "build the guest root file system with mmdebstrap",
            env=env,
        )
        note(_size(root))

    kernel_dir = work / "kernel"
    with _step(f"kernel linux-image-{abi} {version}", progress, timings) as note:
        deb_dir = work / "debs"
        deb_dir.mkdir()
        _run(
            ["apt-get", "download", "-q", f"linux-image-{abi}={version}"],
            f"download linux-image-{abi}={version} (run `apt-get update` if it is gone)",
            cwd=deb_dir,
            env=env,
        )
        deb = next(deb_dir.glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(kernel_dir)], f"unpack {deb.name}")
        shutil.copyfile(kernel_dir / "boot" / f"vmlinuz-{abi}", out / "vmlinuz")
        _run(["depmod", "-b", str(kernel_dir), abi], "index the kernel's modules")
        note(_size(out / "vmlinuz"))

    with _step("out-of-tree nvme modules from linux-source-6.1 (build chroot)", progress, timings) as note:
        built = work / "oot"
        built.mkdir()
        _build_oot_modules(abi, version, sources, built, env)
        note(", ".join(p.name for p in sorted(built.glob("*.ko"))))

    with _step("kernel modules into the guest", progress, timings) as note:
        count = _install_modules(kernel_dir, root, abi, built)
        note(f"{count} modules")

    with _step("guest configuration", progress, timings):
        _configure(root)

    with _step("pack initramfs (cpio + zstd)", progress, timings) as note:
        _pack(root, out / "initrd.cpio.zst")
        note(_size(out / "initrd.cpio.zst"))

    shutil.rmtree(work)
    info = {
        "key": out.name,
        "abi": abi,
        "kernel_version": version,
        "packages": list(GUEST_PACKAGES),
        "modules": list(GUEST_MODULES),
        "oot_modules": list(OOT_MODULES),
        "builder_version": BUILDER_VERSION,
        "initrd_bytes": (out / "initrd.cpio.zst").stat().st_size,
        "step_seconds": timings,
    }
    (out / "image.json").write_text(json.dumps(info, indent=2) + "\n")


def _write_sources(path: Path) -> Path:
    """The host's Debian apt sources for SUITE as one deb822 file (other repositories left out)."""
    stanzas: list[str] = []
    for file in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", file.read_text()):
            fields = _deb822_fields(stanza)
            if _wanted(fields.get("types", ""), fields.get("suites", "")) and fields.get("enabled", "yes") != "no":
                stanzas.append(stanza.strip())
    for file in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if not file.is_file():
            continue
        for line in file.read_text().splitlines():
            stanza = _one_line_to_deb822(line)
            if stanza:
                stanzas.append(stanza)
    if not stanzas:
        raise LabError(f"no apt source for Debian {SUITE} in /etc/apt/sources.list*; add one (a Debian mirror)")
    path.write_text("\n\n".join(stanzas) + "\n")
    return path


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def _wanted(types: str, suites: str) -> bool:
    return "deb" in types.split() and any(s.split("-")[0] == SUITE for s in suites.split())


def _one_line_to_deb822(line: str) -> str | None:
    match = re.match(r"^\s*deb\s+(\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s+(?P<comps>.+)$", line)
    if not match or not _wanted("deb", match["suite"]):
        return None
    text = f"Types: deb\nURIs: {match['uri']}\nSuites: {match['suite']}\nComponents: {match['comps'].strip()}"
    signed = re.search(r"signed-by=(\S+)", match["opts"] or "")
    return text + (f"\nSigned-By: {signed.group(1)}" if signed else "")


def _read_patch(patch: Path) -> str:
    try:
        return patch.read_text()
    except OSError as exc:
        what = f"lab kernel patch {patch} is missing ({exc.strerror})"
        raise LabError(f"{what}; reinstall fabqual with its package data") from None


def _build_oot_modules(abi: str, version: str, sources: Path, out: Path, env: dict[str, str]) -> None:
    """Compile the out-of-tree modules in a build chroot that mmdebstrap discards afterwards."""
    # One Kbuild per source directory (host/, target/): the nvme headers are included
    # relatively ("nvme.h", "../host/nvme.h"), so modules are built in place.
    script = (
        "set -e; mkdir -p /build/out; cd /build; "
        "tar -xJf /usr/src/linux-source-6.1.tar.xz linux-source-6.1/drivers/nvme; "
        "cd linux-source-6.1; for p in /build/patches/*.patch; do patch -s -p1 < $p; done; "
    )
    for directory in sorted({src.split("/")[0] for src in OOT_MODULES.values()}):
        mods = {name: src.split("/")[1] for name, src in OOT_MODULES.items() if src.startswith(f"{directory}/")}
        kbuild = out / f"Kbuild.{directory}"
        kbuild.write_text(
            f"obj-m := {' '.join(f'{name}.o' for name in mods)}\n"
            + "".join(f"{name}-y := {src.removesuffix('.c')}.o\n" for name, src in mods.items())
        )
        kos = " ".join(f"{name}.ko" for name in mods)
        script += (
            f"cd /build/linux-source-6.1/drivers/nvme/{directory}; cp /build/{kbuild.name} Kbuild; "
            f"make -s -C /usr/src/linux-headers-{abi} M=$PWD modules > /build/make.log 2>&1 "
            "|| { tail -n 30 /build/make.log >&2; exit 1; }; "
            f"strip --strip-debug {kos}; cp {kos} /build/out/; "
        )
    patches = out / "patches"
    patches.mkdir()
    for patch in PATCHES:
        (patches / patch.name).write_text(_read_patch(patch))
    _run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--quiet",
            "--aptopt=APT::Install-Recommends false",
            f"--include=linux-headers-{abi},linux-source-6.1={version},make,xz-utils,patch",
            '--customize-hook=mkdir -p "$1/build"',
            f"--customize-hook=copy-in {' '.join(str(k) for k in sorted(out.glob('Kbuild.*')))} {patches} /build",
            f'--customize-hook=chroot "$1" sh -c {_shell_quote(script)}',
            f"--customize-hook=copy-out /build/out/ {out}",
            SUITE,
            "/dev/null",
            str(sources),
        ],
        f"build {'/'.join(OOT_MODULES)} against linux-headers-{abi} (linux-source-6.1={version})",
        env=env,
    )
    for name in OOT_MODULES:
        found = list(out.rglob(f"{name}.ko"))
        if not found:
            raise LabError(f"the build chroot produced no {name}.ko; see the make output above")
        if found[0].parent != out:
            shutil.move(found[0], out / found[0].name)


def _install_modules(kernel_dir: Path, root: Path, abi: str, built: Path) -> int:
    """Copy GUEST_MODULES and their dependencies (and the built ones) into the guest; depmod there."""
    src_base = kernel_dir / "lib" / "modules" / abi
    dst_base = root / "lib" / "modules" / abi
    wanted: set[Path] = set()
    for module in GUEST_MODULES:
        out = _run(
            ["modprobe", "-d", str(kernel_dir), "-S", abi, "--show-depends", module],
            f"resolve the dependencies of kernel module {module}",
        )
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                wanted.add(Path(parts[1]).relative_to(src_base))
    shutil.rmtree(dst_base, ignore_errors=True)
    dst_base.mkdir(parents=True)
    # A module built here replaces Debian's (nvme-fc): leave no second copy for modprobe to pick.
    replaced = {f"{name}.ko" for name in OOT_MODULES}
    wanted = {rel for rel in wanted if rel.name not in replaced}
    for rel in sorted(wanted):
        (dst_base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_base / rel, dst_base / rel)
    for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src_base / meta).exists():
            shutil.copy2(src_base / meta, dst_base / meta)
    updates = dst_base / "updates"
    updates.mkdir()
    for ko in built.glob("*.ko"):
        shutil.copy2(ko, updates / ko.name)
    _run(["depmod", "-b", str(root), abi], "index the guest's kernel modules")
    return len(wanted) + len(list(updates.glob("*.ko")))


def _configure(root: Path) -> None:
    for rel, (mode, text) in guest.FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # etc/hosts etc. may be symlinks or hold defaults
        path.write_text(text)
        path.chmod(mode)
    # Host keys made at package install would be shared by both guests: each gets its own at boot.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    for rel in _TRIM:
        shutil.rmtree(root / rel, ignore_errors=True)
    (root / "usr/lib/udev/hwdb.bin").unlink(missing_ok=True)
    (root / "etc" / "machine-id").write_text("")  # systemd makes a fresh one per boot
    (root / "etc" / "hostname").write_text("fabqual-guest\n")
    chroot = ["chroot", str(root), "systemctl"]
    _run([*chroot, "enable", *guest.ENABLED_UNITS], "enable the guest's services")
    _run([*chroot, "disable", *guest.DISABLED_UNITS], "disable the guest's unneeded services")
    _run([*chroot, "mask", *guest.MASKED_UNITS], "mask the guest's unneeded units")
    console = root / "dev" / "console"
    if not console.exists():
        os.mknod(console, 0o600 | 0o020000, os.makedev(5, 1))


def _pack(root: Path, dest: Path) -> None:
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


@contextmanager
def _step(what: str, progress: Progress, timings: dict[str, float]) -> Iterator[Callable[[str], None]]:
    notes: list[str] = []
    progress(f"  - {what} ...")
    start = time.monotonic()
    yield notes.append
    took = time.monotonic() - start
    timings[what] = round(took, 1)
    progress(f"    done in {took:.0f}s" + (f": {', '.join(notes)}" if notes else ""))


@contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    """One builder at a time per cache; a second one waits and then finds the image built."""
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another process is building the lab image (lock {path}); waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(
    argv: Sequence[str],
    what: str,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a build command; on failure raise one LabError line naming the step and the last output line."""
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=env, capture_output=True, text=True, errors="replace", check=False
        )
    except FileNotFoundError:
        raise LabError(f"cannot {what}: {argv[0]} is not installed (apt-get install {argv[0]})") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).strip().splitlines() if line.strip()]
        last = " | ".join(lines[-3:]) if lines else "no output"
        raise LabError(f"cannot {what}: {argv[0]} exited {proc.returncode}: {last}")
    return proc.stdout


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _size(path: Path) -> str:
    if path.is_dir():
        total = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink())
    else:
        total = path.stat().st_size
    return f"{total / 1e6:.0f} MB"


__all__ = ["Image", "cache_root", "cached_image", "ensure_image", "image_key", "kernel_package"]
