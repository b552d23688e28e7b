"""What a node says about one block device, and whether fabqual may write to it.

Pure: the shell probes are constants taking their one argument as ``$1`` (the
caller quotes it), and the parsers turn their output into frozen records. The
decision (:func:`hazards`) reads only those records, so it is tested on
outputs captured from real nodes.

A device is *busy* when writing to it would destroy something in use (it or a
partition of it is mounted, held by device-mapper/LVM/md, used as swap, or
under ``/`` or ``/boot``); nothing overrides that. It *has signatures* when
``blkid -p`` or ``wipefs`` finds a partition table, file system, RAID or LVM
label on it; only an explicit ``wipe_signatures: true`` overrides that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fabqual.errors import ParseError

# What a disk in $sys says it is, as key=value lines (serial from VPD page 0x80 for SCSI disks).
_IDENTITY = r"""for f in wwid device/wwid eui nguid device/serial serial; do
  [ -r "$sys/$f" ] && printf '%s=%s\n' "$f" "$(tr -d '\000\n' < "$sys/$f")"
done
[ -r "$sys/device/vpd_pg80" ] && printf 'vpd_pg80=%s\n' "$(tail -c +5 "$sys/device/vpd_pg80" | tr -d '\000\n')"
"""

# $1: the declared path. Prints "@@ section" blocks; every section is printed even when empty.
# Shell builtins where they do (read, -ef, globs): under emulation every process costs ~0.1 s.
PROBE_SCRIPT = r"""
dev=$(readlink -f -- "$1" 2>/dev/null)
echo "@@ resolved"
echo "$dev"
if [ -z "$dev" ] || [ ! -b "$dev" ]; then exit 0; fi
name=${dev##*/}
sys=/sys/class/block/$name
echo "@@ missing"
for t in blkid wipefs findmnt lsblk; do command -v "$t" >/dev/null || echo "$t"; done
echo "@@ identity"
@IDENTITY@
echo "@@ devices"
for d in "$sys" "$sys/$name"*; do
  [ -r "$d/dev" ] || continue
  read -r majmin < "$d/dev"
  line="${d##*/} $majmin"
  for h in "$d"/holders/*; do [ -e "$h" ] && line="$line ${h##*/}"; done
  echo "$line"
done
echo "@@ links"
for l in /dev/disk/by-id/* /dev/disk/by-path/*; do
  [ -L "$l" ] && [ "$l" -ef "$dev" ] && echo "$l"
done
echo "@@ mountinfo"
cat /proc/self/mountinfo
echo "@@ swaps"
cat /proc/swaps
echo "@@ roots"
for m in / /boot; do
  src=$(findmnt -rnv -o SOURCE -M "$m" 2>/dev/null)
  [ -b "$src" ] && for mm in $(lsblk -snr -o MAJ:MIN -- "$src" 2>/dev/null); do echo "$m $mm"; done
done
echo "@@ blkid"
blkid -p -o export -- "$dev" 2>&1
echo "exit=$?"
echo "@@ wipefs"
wipefs --noheadings --output TYPE,OFFSET -- "$dev" 2>&1
echo "exit=$?"
""".replace("@IDENTITY@\n", _IDENTITY)

# The identities of every whole disk, to find the one a WWID/serial/EUI names.
LIST_SCRIPT = r"""
for sys in /sys/class/block/*; do
  [ -e "$sys/partition" ] && continue
  echo "@@ ${sys##*/}"
@IDENTITY@
done
exit 0
""".replace("@IDENTITY@\n", _IDENTITY)

_KEY_VALUE = re.compile(r"^[A-Z_]+=")
_WWID_KEYS = ("wwid", "device/wwid")
_SERIAL_KEYS = ("device/serial", "serial", "vpd_pg80")


@dataclass(frozen=True)
class Identity:
    """What a disk says it is: WWID, EUI-64 (else NGUID), serial (empty when it does not say)."""

    wwid: str = ""
    eui: str = ""
    serial: str = ""

    def text(self) -> str:
        parts = [f"{k} {v}" for k, v in (("serial", self.serial), ("wwid", self.wwid), ("eui", self.eui)) if v]
        return ", ".join(parts) or "no serial or WWID"


@dataclass(frozen=True)
class Part:
    """The device itself or one of its partitions: kernel name, major:minor, holders."""

    name: str
    majmin: str
    holders: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mount:
    majmin: str
    mountpoint: str
    source: str


@dataclass(frozen=True)
class Probe:
    """One device as its node sees it, read in one round trip."""

    resolved: str  # the kernel device the declared path leads to; "" when it leads nowhere
    identity: Identity = Identity()
    parts: tuple[Part, ...] = ()  # the device first, then its partitions
    links: tuple[str, ...] = ()  # /dev/disk/by-id and by-path names of the device
    mounts: tuple[Mount, ...] = ()
    swaps: tuple[str, ...] = ()
    roots: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "/" -> major:minor of it and its ancestors
    blkid: dict[str, str] = field(default_factory=dict)
    wipefs: tuple[str, ...] = ()  # "gpt at 0x200"
    unreadable: tuple[str, ...] = ()  # blkid/wipefs could not read the device: its signatures are unknown

    @property
    def exists(self) -> bool:
        return bool(self.parts)


@dataclass(frozen=True)
class Hazards:
    """Why writing to a device would destroy something: busy (never overridable) and signatures."""

    busy: tuple[str, ...]
    signatures: tuple[str, ...]

    @property
    def safe(self) -> bool:
        return not self.busy and not self.signatures


def _sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("@@ "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def _identity(lines: list[str]) -> Identity:
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    wwid = next((values[k].strip() for k in _WWID_KEYS if values.get(k, "").strip()), "")
    serial = next((values[k].strip() for k in _SERIAL_KEYS if values.get(k, "").strip()), "")
    eui = values.get("eui", "").strip() or values.get("nguid", "").strip()
    return Identity(wwid=wwid, eui=eui, serial=serial)


def _mount(line: str) -> Mount:
    # mountinfo: id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    fields = line.split()
    try:
        dash = fields.index("-")
        return Mount(fields[2], _unescape(fields[4]), _unescape(fields[dash + 2]))
    except (ValueError, IndexError):
        raise ParseError("/proc/self/mountinfo", f"line not in mountinfo's format: {line!r}") from None


def _unescape(text: str) -> str:
    """mountinfo and /proc/swaps write space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _exit_and_lines(lines: list[str]) -> tuple[int, list[str]]:
    if not lines or not lines[-1].startswith("exit="):
        raise ParseError("scratch probe", "a tool's exit status line is missing", "\n".join(lines))
    return int(lines[-1].removeprefix("exit=")), lines[:-1]


def parse_probe(output: str) -> Probe:
    """The probe script's output → :class:`Probe`; a blkid/wipefs that cannot read the device is recorded."""
    sections = _sections(output)
    if "resolved" not in sections:
        raise ParseError("scratch probe", "no '@@ resolved' section", output)
    resolved = next(iter(sections["resolved"]), "").strip()
    if "devices" not in sections:
        return Probe(resolved=resolved)
    parts = []
    for line in sections["devices"]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ParseError("scratch probe", f"device line {line!r} has no major:minor", output)
        name, majmin, *holders = fields
        parts.append(Part(name, majmin, tuple(holders)))
    roots: dict[str, list[str]] = {}
    for line in sections.get("roots", []):
        mountpoint, majmin = line.split()
        roots.setdefault(mountpoint, []).append(majmin)
    unreadable = [f"{tool} is missing on the node (install util-linux)" for tool in sections.get("missing", [])]
    blkid_status, blkid_lines = _exit_and_lines(sections.get("blkid", []))
    blkid = dict(line.split("=", 1) for line in blkid_lines if _KEY_VALUE.match(line))
    # blkid: 0 found something, 2 nothing, 8 several signatures that contradict each other (still signatures).
    # It also exits 2 when it cannot open the device, so any line that is not KEY=value is a failure.
    errors = [line.strip() for line in blkid_lines if line.strip() and not _KEY_VALUE.match(line)]
    if blkid_status not in (0, 2, 8) or errors:
        unreadable.append(f"blkid -p cannot read it ({' '.join(errors) or f'exit status {blkid_status}'})")
    if blkid_status == 8:
        blkid.setdefault("AMBIVALENT", "several signatures that contradict each other")
    wipefs_status, wipefs_lines = _exit_and_lines(sections.get("wipefs", []))
    if wipefs_status != 0:
        why = " ".join(line.strip() for line in wipefs_lines) or f"exit status {wipefs_status}"
        unreadable.append(f"wipefs cannot read it ({why})")
        wipefs_lines = []
    return Probe(
        resolved=resolved,
        identity=_identity(sections.get("identity", [])),
        parts=tuple(parts),
        links=tuple(line.strip() for line in sections.get("links", []) if line.strip()),
        mounts=tuple(_mount(line) for line in sections.get("mountinfo", []) if line.strip()),
        swaps=tuple(_unescape(line.split()[0]) for line in sections.get("swaps", [])[1:] if line.strip()),
        roots={k: tuple(v) for k, v in roots.items()},
        blkid=blkid,
        unreadable=tuple(unreadable),
        wipefs=tuple(" at ".join(line.split()) for line in wipefs_lines if line.strip()),
    )


def parse_identities(output: str) -> dict[str, Identity]:
    """The list script's output → kernel name → identity, for every whole disk."""
    return {name: _identity(lines) for name, lines in _sections(output).items()}


def hazards(probe: Probe) -> Hazards:
    """Everything that makes writing to the probed device unsafe, each as a short phrase."""
    names = {part.name: part for part in probe.parts}
    majmins = {part.majmin: part.name for part in probe.parts}
    device = probe.parts[0].name if probe.parts else ""

    def which(name: str) -> str:
        return "it" if name == device else f"its partition {name}"

    busy: list[str] = []
    for mountpoint in ("/", "/boot"):
        under = [majmins[m] for m in probe.roots.get(mountpoint, ()) if m in majmins]
        if under:
            what = "root" if mountpoint == "/" else "boot"
            busy.append(f"{mountpoint} (the node's {what} file system) is on {which(under[0])}")
    for mount in probe.mounts:
        name = majmins.get(mount.majmin) or _dev_name(mount.source, names)
        if name:
            busy.append(f"{which(name)} is mounted at {mount.mountpoint}")
    for swap in probe.swaps:
        name = _dev_name(swap, names)
        if name:
            busy.append(f"{which(name)} is in use as swap")
    for part in probe.parts:
        if part.holders:
            busy.append(f"{which(part.name)} is held by {', '.join(part.holders)} (device-mapper, LVM or md)")
    busy.extend(probe.unreadable)  # unknown signatures are not wiped blind

    signatures: list[str] = []
    if "PTTYPE" in probe.blkid:
        signatures.append(f"blkid -p finds a {probe.blkid['PTTYPE']} partition table")
    if "TYPE" in probe.blkid:
        signatures.append(f"blkid -p finds {probe.blkid['TYPE']} ({probe.blkid.get('USAGE', 'signature')})")
    if "AMBIVALENT" in probe.blkid:
        signatures.append(f"blkid -p finds {probe.blkid['AMBIVALENT']}")
    if probe.wipefs:
        signatures.append(f"wipefs lists {', '.join(probe.wipefs)}")
    partitions = [part.name for part in probe.parts[1:]]
    if partitions and not any("partition table" in s for s in signatures):
        signatures.append(f"the kernel lists partitions of it ({', '.join(partitions)})")
    return Hazards(tuple(dict.fromkeys(busy)), tuple(signatures))


def _dev_name(path: str, names: dict[str, Part]) -> str:
    """The kernel name ``path`` (/dev/X) stands for, when X is the device or one of its partitions."""
    if path.startswith("/dev/") and path.removeprefix("/dev/") in names:
        return path.removeprefix("/dev/")
    return ""


def matches(identity: Identity, key: str, wanted: str) -> bool:
    """Whether a disk's identity is the one a topology names (``key``: wwid, serial or eui).

    WWIDs compare without case and without the type prefix the kernel puts in
    front (``naa.``, ``eui.``, ``t10.``, ``0x``), so ``wwn-0x5000c500a1b2c3d4``'s
    number matches ``naa.5000c500a1b2c3d4``; EUIs compare as hex digits, whatever
    the separators (sysfs prints ``00 25 38 ...``).
    """
    if key == "serial":
        return bool(identity.serial) and identity.serial == wanted.strip()
    if key == "eui":
        have = _hex(identity.eui) or (_hex(identity.wwid) if identity.wwid.lower().startswith("eui.") else "")
        return bool(have) and have == _hex(wanted)
    return bool(identity.wwid) and _bare_wwid(identity.wwid) == _bare_wwid(wanted)


def _hex(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower().removeprefix("eui."))


def _bare_wwid(text: str) -> str:
    bare = text.strip().lower()
    for prefix in ("naa.", "eui.", "t10.", "wwn-0x", "0x"):
        bare = bare.removeprefix(prefix)
    return " ".join(bare.split())
