"""The grammar of every string a topology file may hold, checked at load time.

Each ``check_*`` returns None for a good value, else the text of what a good
value looks like (the loader adds file, key and the value given). The grammars
are strict on purpose: a value that reaches a shell on a node (a module, a
netdev, a device path, an NQN) can then hold no shell metacharacter, no
whitespace, no leading ``-`` and no ``..`` path component, whatever the command
builders do with it (they quote anyway). ``docs/topology-fields.md`` lists
every field with its check; a self-test keeps that table complete.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

DISCOVER = "discover"

Check = Callable[[str], "str | None"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
_WWN = re.compile(r"(0x)?[0-9a-fA-F]{16}|([0-9a-fA-F]{2}:){7}[0-9a-fA-F]{2}")
# Linux's dev_valid_name() (IFNAMSIZ 16, no '/', ':' or whitespace) narrowed to characters
# no shell treats specially, and no leading '.' or '-'.
_NETDEV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
# Kernel module names: MODULE_NAME_LEN 56; '-' and '_' are the same to modprobe.
_MODULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,54}")
# RDMA device names (IB_DEVICE_NAME_MAX 64): mlx5_0, qedr0, rxe0, vmw_pvrdma0.
_RDMA_DEVICE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# udev's symlink names (/dev/disk/by-id/...) keep letters, digits and "#+-.:=@_" (util_replace_chars).
_PATH_COMPONENT = re.compile(r"[A-Za-z0-9_+:=@#.-]{1,255}")
_FILE_COMPONENT = re.compile(r"[A-Za-z0-9_+.-]{1,255}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_UNIX_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_VSPHERE_USER = re.compile(r"[A-Za-z0-9_.-]{1,64}(@[A-Za-z0-9_.-]{1,253})?|[A-Za-z0-9_.-]{1,64}\\[A-Za-z0-9_.-]{1,64}")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_THUMBPRINT = re.compile(r"([0-9A-Fa-f]{2}:){19}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{40}|([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}")
_VMNIC = re.compile(r"vmnic[0-9]{1,4}")
_VMKNIC = re.compile(r"vmk[0-9]{1,4}")
# NVMe Base Specification 2.0, 4.5 "NVMe Qualified Names": nqn.yyyy-mm.<reverse domain>[:<string>],
# or nqn.2014-08.org.nvmexpress:uuid:<UUID>; at most 223 bytes. The string after the colon may be
# any UTF-8 in the spec; here it keeps to what no shell and no configfs path treats specially.
_NQN = re.compile(
    r"nqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(:[A-Za-z0-9._:-]+)?"
)
# An NVMe EUI-64 (8 bytes) or NGUID (16 bytes) in hex, bytes optionally separated as sysfs and nvme-cli print them.
_EUI = re.compile(r"(eui\.)?([0-9a-fA-F]{2}[ :-]?){7}[0-9a-fA-F]{2}(([0-9a-fA-F]{2}[ :-]?){7}[0-9a-fA-F]{2})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# The Debian releases the emulated lab's guests can run (fabqual.lab.releases builds their images).
LAB_RELEASES = ("bullseye", "bookworm", "trixie")


def check_lab_release(value: str) -> str | None:
    """A Debian release the emulated lab builds guest images of."""
    if value not in LAB_RELEASES:
        return f"one of {', '.join(LAB_RELEASES)}"
    return None


def check_name(value: str) -> str | None:
    """A name the topology itself gives (node, HBA, RNIC, scratch device, link, vCenter)."""
    if not _NAME.fullmatch(value):
        return "a name starts with a letter and holds only letters, digits, '_', '.', '-' (at most 63)"
    return None


def check_wwn(value: str) -> str | None:
    if value == DISCOVER or _WWN.fullmatch(value):
        return None
    return "a WWN is 8 bytes of hex (0x2100f4e9d4543210 or 21:00:f4:e9:d4:54:32:10) or 'discover'"


def check_netdev(value: str) -> str | None:
    if value == DISCOVER or (_NETDEV.fullmatch(value) and value not in (".", "..")):
        return None
    return (
        "a network interface name is 1-15 letters, digits, '_', '.', '-' (not starting with '.' or '-'), or 'discover'"
    )


def check_module(value: str) -> str | None:
    if _MODULE.fullmatch(value):
        return None
    return "a kernel module name is letters, digits, '_' and '-' (at most 55), like qla2xxx or nvmet-rdma"


def check_rdma_device(value: str) -> str | None:
    if value == DISCOVER or _RDMA_DEVICE.fullmatch(value):
        return None
    return "an RDMA device name is letters, digits, '_', '.', '-' (like qedr0 or mlx5_0), or 'discover'"


def _components_ok(parts: list[str], pattern: re.Pattern[str]) -> bool:
    return bool(parts) and all(pattern.fullmatch(p) and p not in (".", "..") for p in parts)


def check_device_path(value: str) -> str | None:
    """A block device path under /dev (kernel name or a udev link such as /dev/disk/by-id/...)."""
    parts = value.removeprefix("/dev/").split("/")
    if value.startswith("/dev/") and len(value) <= 1024 and _components_ok(parts, _PATH_COMPONENT):
        return None
    return (
        "a scratch device is a path under /dev/ made of letters, digits and '_+:=@#.-'"
        " (no '..', spaces or shell characters), like /dev/nvme1n1 or /dev/disk/by-id/nvme-eui.0025..."
    )


def check_node_path(value: str) -> str | None:
    """An absolute path on a node (a socket or file fabqual only reads or connects to)."""
    parts = value.removeprefix("/").split("/")
    if value.startswith("/") and len(value) <= 1024 and _components_ok(parts, _PATH_COMPONENT):
        return None
    return "an absolute path made of letters, digits and '_+:=@#.-' (no '..', spaces or shell characters)"


def check_firmware_file(value: str) -> str | None:
    """A file under /lib/firmware, relative to it (subdirectories allowed: qed/qed_init_values.bin)."""
    if len(value) <= 255 and _components_ok(value.split("/"), _FILE_COMPONENT) and not value.startswith("-"):
        return None
    return "a firmware file name relative to /lib/firmware, like ql2700_fw.bin (letters, digits, '_+.-', no '..')"


def check_local_path(value: str) -> str | None:
    """A file on the machine fabqual runs on (opened by Python, never through a shell)."""
    if _CONTROL.search(value) or len(value) > 4096:
        return "a file path without control characters or line breaks"
    return None


def check_env_name(value: str) -> str | None:
    if _ENV_NAME.fullmatch(value):
        return None
    return "the NAME of an environment variable (letters, digits, '_'), never the password itself"


def check_unix_user(value: str) -> str | None:
    if _UNIX_USER.fullmatch(value):
        return None
    return "a login name is letters, digits, '_', '.', '-' (at most 32), starting with a letter or '_'"


def check_vsphere_user(value: str) -> str | None:
    if _VSPHERE_USER.fullmatch(value):
        return None
    return "a vSphere user is name@domain or DOMAIN\\name (letters, digits, '_', '.', '-')"


def check_host(value: str) -> str | None:
    """A host name (RFC 1123 labels; '_' tolerated) or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return "a host name (letters, digits, '-', '.') or an IP address"


def check_node_address(value: str) -> str | None:
    """Where a node is: a host name or address, or 'local' for the machine fabqual runs on."""
    return None if value == "local" else check_host(value)


def check_thumbprint(value: str) -> str | None:
    if _THUMBPRINT.fullmatch(value):
        return None
    return "a certificate thumbprint is its SHA-1 (or SHA-256) in hex, colon separated as vSphere shows it"


def check_inventory_name(value: str) -> str | None:
    """A vSphere inventory name (VM, datacenter, switch, port group, host): sent only through the API."""
    if not value or len(value) > 80 or value != value.strip() or _CONTROL.search(value) or set("/\\%") & set(value):
        return "a vSphere name is 1-80 printable characters without '/', '\\', '%' or surrounding spaces"
    return None


def check_vmnic(value: str) -> str | None:
    return None if _VMNIC.fullmatch(value) else "an ESXi uplink is a vmnic name, like vmnic4"


def check_vmknic(value: str) -> str | None:
    return None if _VMKNIC.fullmatch(value) else "an ESXi VMkernel adapter is a vmk name, like vmk1"


def check_nqn(value: str) -> str | None:
    if len(value.encode()) <= 223 and _NQN.fullmatch(value):
        return None
    return (
        "an NQN is nqn.<yyyy-mm>.<reverse domain>[:<name>] as the NVMe spec defines it, at most 223 bytes,"
        " the name of letters, digits and '._:-' (like nqn.2024-01.io.example:fc-nvme)"
    )


def check_text(value: str) -> str | None:
    """Free text shown in reports (a model name): one line of printable characters."""
    if len(value) > 200 or _CONTROL.search(value):
        return "one line of printable text (at most 200 characters)"
    return None


def check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return "expected an address with prefix length, like 192.168.50.1/24"
    return None if "/" in value else "expected an address with prefix length, like 192.168.50.1/24"


def check_network(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "expected a network with prefix length, like 10.77.0.0/30"
    return None if "/" in value else "expected a network with prefix length, like 10.77.0.0/30"


def check_profile(value: str) -> str | None:
    """A thresholds profile: a shipped profile's name, or the path of a YAML file."""
    return check_local_path(value)


def each(check: Check) -> Callable[[tuple[str, ...]], str | None]:
    """The check applied to every item of a list field (its name reads ``each(check_name)``)."""

    def check_items(values: tuple[str, ...]) -> str | None:
        for value in values:
            problem = check(value)
            if problem:
                return f"{problem} (item {value!r})"
        return None

    check_items.__name__ = f"each({check.__name__})"
    check_items.item_check = check  # type: ignore[attr-defined]  # records.build names the item at fault
    return check_items


def check_disk_identity(value: str) -> str | None:
    """A disk's WWID or serial as it reports it (compared in Python with sysfs; never put into a command)."""
    if value.strip() and value.isascii() and value.isprintable() and len(value) <= 256:
        return None
    return "a serial or WWID is printable ASCII text, 1-256 characters, as the disk reports it"


def check_eui(value: str) -> str | None:
    if _EUI.fullmatch(value):
        return None
    return "an EUI is 8 bytes (EUI-64) or 16 bytes (NGUID) of hex, e.g. 0025385b71b01234"
