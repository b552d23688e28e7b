"""The emulated lab's guest images: one per Debian release, kernel + root file system in a cpio initramfs.

Built on first use and cached under ``${FABQUAL_CACHE:-~/.cache/fabqual}/images/<release>/<key>``,
where the key hashes every input (release, packages as resolved, modules, patches,
guest files, builder version, the release's kernel ABI and version), so a change
of any of them builds a new image. Steps, each in its own module:

1. releases.AptView: the release's package lists in an apt view of its own, to
   find its current kernel and which of the wanted packages (packages.py) it has;
2. rootfs.bootstrap: ``mmdebstrap --variant=minbase`` of the release from the
   host's Debian mirrors;
3. kernel_modules: the release's kernel package, only the modules the lab needs plus
   what ``modprobe --show-depends`` says they depend on, and the nvme modules
   the kernel lacks or a patch fixes, built out of tree;
4. rootfs.configure/pack: the guest's files (guest.py), depmod, a zstd cpio.

Must run as root (mmdebstrap in root mode, chroot, device nodes). Images of other
releases and other inputs are left in place: several worktrees share one image
store, and each boots its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fabqual.errors import LabError
from fabqual.lab import guest, kernel_modules, packages, rootfs
from fabqual.lab.releases import DEFAULT_RELEASE, AptView, KernelPackage, check_release

# Bump when the way the image is built changes (the inputs below are hashed anyway).
BUILDER_VERSION = 7

# Kernel modules the lab uses; their hard dependencies are added by modprobe. One the
# release's kernel lacks is left out of its image (and listed in image.json).
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
    "qla2xxx",  # needs nvme-fc: loads against the out-of-tree build where a patch replaces it
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
    release: str = DEFAULT_RELEASE

    def info(self) -> dict[str, object]:
        info: dict[str, object] = json.loads((self.directory / "image.json").read_text())
        return info


def cache_root() -> Path:
    """``$FABQUAL_CACHE``, else ``~/.cache/fabqual``."""
    return Path(os.environ.get("FABQUAL_CACHE") or Path.home() / ".cache" / "fabqual").expanduser()


def image_key(release: str, kernel: KernelPackage, resolved: tuple[str, ...]) -> str:
    """Hash of every input of the image; a new value means a new build."""
    patches = kernel_modules.patches_for(kernel)
    inputs = {
        "builder": BUILDER_VERSION,
        "suite": release,
        "packages": list(resolved),  # order matters to apt (see usr-is-merged)
        "purged": list(packages.PURGED),
        "modules": sorted(GUEST_MODULES),
        "oot": kernel_modules.OOT_SOURCES,
        "patches": {patch.name: kernel_modules.read_patch(patch) for patch in patches},
        "files": guest.FILES,
        "enabled": guest.ENABLED_UNITS,
        "disabled": guest.DISABLED_UNITS,
        "masked": guest.MASKED_UNITS,
        "abi": kernel.abi,
        "kernel_version": kernel.version,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _plan(release: str, progress: Progress) -> tuple[AptView, KernelPackage, packages.Resolved, str]:
    view = AptView(release, cache_root())
    view.refresh(progress=progress)
    kernel = view.kernel()
    resolved = packages.resolve(view)
    return view, kernel, resolved, image_key(release, kernel, resolved.install)


def cached_image(release: str = DEFAULT_RELEASE, progress: Progress = print) -> Image | None:
    """The image of ``release`` for the current inputs if it is already built, without building."""
    release = check_release(release)
    _view, kernel, _resolved, key = _plan(release, progress)
    return _image_at(cache_root() / "images" / release / key, release, kernel)


def ensure_image(release: str = DEFAULT_RELEASE, progress: Progress = print) -> Image:
    """The guest image of ``release`` for the current inputs, building it first if it is not cached."""
    release = check_release(release)
    if os.geteuid() != 0:
        raise LabError("building the lab image needs root (mmdebstrap, chroot); run fabqual as root")
    view, kernel, resolved, key = _plan(release, progress)
    images = cache_root() / "images" / release
    images.mkdir(parents=True, exist_ok=True)
    built = _image_at(images / key, release, kernel)
    if built is not None:  # no waiting behind another release's build for an image already there
        return built
    # One lock for the whole store: builds of different releases queue too (they share the CPUs).
    with _locked(images.parent / ".build.lock", progress):
        image = _image_at(images / key, release, kernel)
        if image is not None:
            return image
        progress(f"building lab image {release}/{key} (kernel {kernel.abi} {kernel.version}) under {images}")
        start = time.monotonic()
        partial = images / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            _build(partial, key, view, kernel, resolved, progress)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        final = images / key
        partial.rename(final)
        image = _image_at(final, release, kernel)
        assert image is not None
        progress(f"lab image ready in {time.monotonic() - start:.0f}s: {_size(image.initrd)} initramfs")
        return image


def _image_at(directory: Path, release: str, kernel: KernelPackage) -> Image | None:
    if not (directory / "image.json").is_file():
        return None
    kernel_file, initrd = directory / "vmlinuz", directory / "initrd.cpio.zst"
    return Image(directory, kernel_file, initrd, kernel.abi, kernel.version, directory.name, release)


def _build(
    out: Path, key: str, view: AptView, kernel: KernelPackage, resolved: packages.Resolved, progress: Progress
) -> None:
    release = view.release
    work = out / "work"
    work.mkdir()
    # mmdebstrap and apt put their temporary files under TMPDIR: keep them in the cache.
    env = {**os.environ, "TMPDIR": str(work), "LC_ALL": "C.UTF-8"}
    root = work / "root"
    timings: dict[str, float] = {}
    if resolved.left_out:
        progress(f"  Debian {release} lacks the optional package(s) {', '.join(resolved.left_out)}; left out")

    with _step(f"guest root file system (mmdebstrap {release})", progress, timings) as note:
        rootfs.bootstrap(release, resolved.install, view.sources, root, env)
        note(_size(root))

    kernel_dir = work / "kernel"
    with _step(f"kernel linux-image-{kernel.abi} {kernel.version}", progress, timings) as note:
        deb = view.download(f"linux-image-{kernel.abi}={kernel.version}", work / "debs")
        vmlinuz = kernel_modules.unpack_kernel(deb, kernel, kernel_dir)
        shutil.copyfile(vmlinuz, out / "vmlinuz")
        note(_size(out / "vmlinuz"))

    oot = kernel_modules.to_build(kernel_dir, kernel)
    built = work / "oot"
    built.mkdir()
    with _step(f"out-of-tree modules from linux-source-{kernel.series} (build chroot)", progress, timings) as note:
        kernel_modules.build(release, kernel, oot, view.sources, built, env)
        note(", ".join(p.name for p in sorted(built.glob("*.ko"))) or "none needed")

    with _step("kernel modules into the guest", progress, timings) as note:
        # The out-of-tree candidates too: where the kernel ships them, its own are taken.
        wanted = GUEST_MODULES + tuple(kernel_modules.OOT_SOURCES)
        installed = kernel_modules.install(kernel_dir, root, kernel, wanted, built)
        absent = installed["absent"]
        note(f"{installed['count']} modules" + (f"; not in this kernel: {', '.join(absent)}" if absent else ""))

    with _step("guest configuration", progress, timings):
        configured = rootfs.configure(root)

    with _step("pack initramfs (cpio + zstd)", progress, timings) as note:
        rootfs.pack(root, out / "initrd.cpio.zst")
        note(_size(out / "initrd.cpio.zst"))

    shutil.rmtree(work)
    info = {
        "key": key,
        "release": release,
        "abi": kernel.abi,
        "kernel_version": kernel.version,
        "packages": resolved.versions,
        "packages_left_out": list(resolved.left_out),
        "modules": list(GUEST_MODULES),
        "modules_absent": absent,
        "oot_modules": installed["built"],
        "oot_shipped_by_kernel": sorted(set(kernel_modules.OOT_SOURCES) - set(oot)),
        "patches": [patch.name for patch in kernel_modules.patches_for(kernel)],
        **configured,
        "builder_version": BUILDER_VERSION,
        "initrd_bytes": (out / "initrd.cpio.zst").stat().st_size,
        "step_seconds": timings,
    }
    (out / "image.json").write_text(json.dumps(info, indent=2) + "\n")


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
            progress(f"another process is building this lab image (lock {path}); waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _size(path: Path) -> str:
    if path.is_dir():
        total = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink())
    else:
        total = path.stat().st_size
    return f"{total / 1e6:.0f} MB"


__all__ = ["GUEST_MODULES", "Image", "cache_root", "cached_image", "ensure_image", "image_key"]
