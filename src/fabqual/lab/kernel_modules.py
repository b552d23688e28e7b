"""The guest's kernel modules: Debian's, picked by need, and the nvme ones built out of tree.

Debian leaves ``nvme-fcloop`` and ``nvme-loop`` out of its kernels; they are
built from the release's own ``linux-source-<series>`` against the matching
``linux-headers`` in a throwaway build chroot (so compilers never enter the
guest), and go to ``updates/``, which depmod prefers over Debian's own. A
module of the kernel that needs a fix is built the same way with the patches
under ``patches/<series>/`` (only kernels that need one have a directory).

Which modules are built is decided by looking: a candidate the release's kernel
package already ships is not built, a patched one always is.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from fabqual.errors import LabError
from fabqual.lab.releases import KernelPackage, run

# Out-of-tree candidates: module name -> source file under drivers/nvme/.
OOT_SOURCES: dict[str, str] = {
    "nvme-fcloop": "target/fcloop.c",
    "nvme-loop": "target/loop.c",
    "nvme-fc": "host/fc.c",
}
PATCH_ROOT = Path(__file__).with_name("patches")


def patches_for(kernel: KernelPackage) -> tuple[Path, ...]:
    """The patches this kernel series needs (``patches/<series>/*.patch``), in name order."""
    return tuple(sorted((PATCH_ROOT / kernel.series).glob("*.patch")))


def read_patch(patch: Path) -> str:
    try:
        return patch.read_text()
    except OSError as exc:
        what = f"lab kernel patch {patch} is missing ({exc.strerror})"
        raise LabError(f"{what}; reinstall fabqual with its package data") from None


def patched_modules(patches: tuple[Path, ...]) -> set[str]:
    """Modules whose source a patch changes (its ``+++ b/drivers/nvme/...`` lines)."""
    by_source = {src: name for name, src in OOT_SOURCES.items()}
    touched: set[str] = set()
    for patch in patches:
        for source in re.findall(r"^\+\+\+ b/drivers/nvme/(\S+)", read_patch(patch), re.MULTILINE):
            if source not in by_source:
                raise LabError(f"{patch.name} changes drivers/nvme/{source}, which no out-of-tree module is built from")
            touched.add(by_source[source])
    return touched


def unpack_kernel(deb: Path, kernel: KernelPackage, into: Path) -> Path:
    """Unpack the kernel package, index its modules; the vmlinuz path."""
    run(["dpkg-deb", "-x", str(deb), str(into)], f"unpack {deb.name}")
    merged = into / "usr" / "lib" / "modules"  # trixie's packages ship modules under /usr only
    if merged.is_dir() and not (into / "lib" / "modules").exists():
        (into / "lib").mkdir(exist_ok=True)
        merged.rename(into / "lib" / "modules")
    run(["depmod", "-b", str(into), kernel.abi], "index the kernel's modules")
    return into / "boot" / f"vmlinuz-{kernel.abi}"


def shipped(kernel_dir: Path, kernel: KernelPackage, module: str) -> bool:
    """True if the kernel package has ``module`` (any compression, '-' and '_' alike)."""
    want = module.replace("_", "-")
    base = kernel_dir / "lib" / "modules" / kernel.abi / "kernel"
    return any(_module_name(path) == want for path in base.rglob(f"{module[:4]}*.ko*"))


def to_build(kernel_dir: Path, kernel: KernelPackage) -> dict[str, str]:
    """Module -> source of what to build for this kernel: what it lacks, and what a patch fixes."""
    patched = patched_modules(patches_for(kernel))
    return {name: src for name, src in OOT_SOURCES.items() if name in patched or not shipped(kernel_dir, kernel, name)}


def build(
    release: str, kernel: KernelPackage, modules: dict[str, str], sources: Path, out: Path, env: dict[str, str]
) -> None:
    """Compile ``modules`` in a build chroot of ``release`` that mmdebstrap discards afterwards."""
    if not modules:
        return
    tree = f"linux-source-{kernel.series}"
    # One Kbuild per source directory (host/, target/): the nvme headers are included
    # relatively ("nvme.h", "../host/nvme.h"), so modules are built in place.
    script = (
        "set -e; mkdir -p /build/out; cd /build; "
        f"tar -xJf /usr/src/{tree}.tar.xz {tree}/drivers/nvme; "
        f"cd {tree}; for p in /build/patches/*.patch; do [ -e $p ] || continue; patch -s -p1 < $p; done; "
    )
    for directory in sorted({src.split("/")[0] for src in modules.values()}):
        mods = {name: src.split("/")[1] for name, src in modules.items() if src.startswith(f"{directory}/")}
        kbuild = out / f"Kbuild.{directory}"
        kbuild.write_text(
            f"obj-m := {' '.join(f'{name}.o' for name in mods)}\n"
            + "".join(f"{name}-y := {src.removesuffix('.c')}.o\n" for name, src in mods.items())
        )
        kos = " ".join(f"{name}.ko" for name in mods)
        script += (
            f"cd /build/{tree}/drivers/nvme/{directory}; cp /build/{kbuild.name} Kbuild; "
            f"make -s -C /usr/src/linux-headers-{kernel.abi} M=$PWD modules > /build/make.log 2>&1 "
            "|| { tail -n 30 /build/make.log >&2; exit 1; }; "
            f"strip --strip-debug {kos}; cp {kos} /build/out/; "
        )
    patches = out / "patches"
    patches.mkdir()
    for patch in patches_for(kernel):
        (patches / patch.name).write_text(read_patch(patch))
    run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--quiet",
            "--aptopt=APT::Install-Recommends false",
            f"--include=linux-headers-{kernel.abi},{tree}={kernel.version},make,xz-utils,patch",
            '--customize-hook=mkdir -p "$1/build"',
            f"--customize-hook=copy-in {' '.join(str(k) for k in sorted(out.glob('Kbuild.*')))} {patches} /build",
            f'--customize-hook=chroot "$1" sh -c {shell_quote(script)}',
            f"--customize-hook=copy-out /build/out/ {out}",
            release,
            "/dev/null",
            str(sources),
        ],
        f"build {'/'.join(modules)} against linux-headers-{kernel.abi} ({tree}={kernel.version})",
        env=env,
    )
    for name in modules:
        found = list(out.rglob(f"{name}.ko"))
        if not found:
            raise LabError(f"the build chroot produced no {name}.ko; see the make output above")
        if found[0].parent != out:
            shutil.move(found[0], out / found[0].name)


def install(
    kernel_dir: Path, root: Path, kernel: KernelPackage, wanted_modules: tuple[str, ...], built: Path
) -> dict[str, Any]:
    """Copy the wanted modules and their dependencies (and the built ones) into the guest; depmod there.

    A wanted module this kernel does not have is left out and listed under "absent": the links
    that need it find that out by probing the guest and skip with that reason.
    """
    abi = kernel.abi
    src_base = kernel_dir / "lib" / "modules" / abi
    dst_base = root / "lib" / "modules" / abi
    built_names = {ko.stem for ko in built.glob("*.ko")}
    files: set[Path] = set()
    absent: list[str] = []
    for module in wanted_modules:
        if module.replace("_", "-") in {n.replace("_", "-") for n in built_names}:
            continue
        try:
            out = run(
                ["modprobe", "-d", str(kernel_dir), "-S", abi, "--show-depends", module],
                f"resolve the dependencies of kernel module {module}",
            )
        except LabError:
            absent.append(module)
            continue
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                files.add(Path(parts[1]).relative_to(src_base))
    shutil.rmtree(dst_base, ignore_errors=True)
    dst_base.mkdir(parents=True)
    # A module built here replaces Debian's (nvme-fc): leave no second copy for modprobe to pick.
    replaced = {name.replace("_", "-") for name in built_names}
    files = {rel for rel in files if _module_name(rel) not in replaced}
    for rel in sorted(files):
        (dst_base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_base / rel, dst_base / rel)
    for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src_base / meta).exists():
            shutil.copy2(src_base / meta, dst_base / meta)
    updates = dst_base / "updates"
    updates.mkdir()
    for ko in built.glob("*.ko"):
        shutil.copy2(ko, updates / ko.name)
    run(["depmod", "-b", str(root), abi], "index the guest's kernel modules")
    return {"count": len(files) + len(built_names), "absent": absent, "built": sorted(built_names)}


def _module_name(path: Path) -> str:
    name = path.name
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("_", "-")


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


__all__ = ["OOT_SOURCES", "build", "install", "patched_modules", "patches_for", "to_build", "unpack_kernel"]
