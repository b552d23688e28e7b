"""DH-HMAC-CHAP secrets (NVMe in-band authentication) and where the kernel target keeps them.

A secret is written ``DHHC-1:<hh>:<base64 of key + CRC-32 of key, little endian>:``
(NVMe Base Specification 2.0, 8.13.5.8; nvme-cli ``gen-dhchap-key``), ``hh``
the hash the key is transformed with (00: none). The key is 32, 48 or 64
bytes. :func:`parse_secret` is tested on nvme-cli 2.3's own output.

On the target, a host entry ``hosts/<hostnqn>`` holds ``dhchap_key`` (the host's
secret), ``dhchap_ctrl_key`` (the controller's, for bidirectional
authentication) and ``dhchap_hash``; a kernel without ``NVME_TARGET_AUTH`` has
none of them, which :func:`target_auth_missing` reports as the probed reason.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import shlex
import zlib

from fabqual.drivers.journal import exists, sh, write
from fabqual.drivers.nvmet import ROOT
from fabqual.errors import ParseError
from fabqual.executors.base import Executor, log_step

KEY_LENGTHS = (32, 48, 64)
TOOL = "DH-HMAC-CHAP secret"


def make_secret(key: bytes | None = None, *, hmac: int = 0) -> str:
    """A secret in the ``DHHC-1`` form nvme-cli and the kernel read (a fresh random 32-byte key by default)."""
    key = secrets.token_bytes(32) if key is None else key
    if len(key) not in KEY_LENGTHS or hmac not in range(4):
        raise ValueError(f"a DH-HMAC-CHAP key is 32, 48 or 64 bytes with hmac 0-3, not {len(key)} bytes, hmac {hmac}")
    body = base64.b64encode(key + zlib.crc32(key).to_bytes(4, "little")).decode()
    return f"DHHC-1:{hmac:02x}:{body}:"


def parse_secret(text: str) -> tuple[int, bytes]:
    """``DHHC-1:hh:base64:`` → (hmac, key), the CRC checked."""
    parts = text.strip().split(":")
    if len(parts) != 4 or parts[0] != "DHHC-1" or parts[3] != "" or len(parts[1]) != 2:
        raise ParseError(TOOL, "not DHHC-1:<hh>:<base64>:", text)
    try:
        hmac = int(parts[1], 16)
        blob = base64.b64decode(parts[2], validate=True)
    except (ValueError, binascii.Error):
        raise ParseError(TOOL, "hash id is not hex or the key is not base64", text) from None
    key, crc = blob[:-4], blob[-4:]
    if len(key) not in KEY_LENGTHS:
        raise ParseError(TOOL, f"key of {len(key)} bytes; expected 32, 48 or 64", text)
    if zlib.crc32(key).to_bytes(4, "little") != crc:
        raise ParseError(TOOL, "CRC-32 does not match the key", text)
    return hmac, key


def host_dir(hostnqn: str) -> str:
    return f"{ROOT}/hosts/{hostnqn}"


def target_auth_missing(target: Executor, hostnqn: str) -> str:
    """Why the target's kernel cannot authenticate ``hostnqn`` (its host entry has no dhchap_key), or ''."""
    if exists(target, f"{host_dir(hostnqn)}/dhchap_key"):
        return ""
    return f"{target.node}: nvmet host entries have no dhchap_key (kernel without NVME_TARGET_AUTH)"


def set_host_keys(target: Executor, hostnqn: str, host_key: str, ctrl_key: str = "") -> None:
    """Give the host entry its secret (and the controller's, for bidirectional).

    Only for a host entry the case made (with its subsystem, journaled): the keys go when the entry is
    removed. Nothing clears a key in place: 6.12 refuses any value that is not a DHHC-1 secret.
    """
    where = host_dir(hostnqn)
    log_step(target.node, f"DH-HMAC-CHAP keys for {hostnqn}{' (bidirectional)' if ctrl_key else ''}")
    write(target, f"{where}/dhchap_hash", "hmac(sha256)")
    write(target, f"{where}/dhchap_key", host_key)
    if ctrl_key:
        write(target, f"{where}/dhchap_ctrl_key", ctrl_key)


def host_auth_missing(host: Executor, controller: str) -> str:
    """Why the host's kernel cannot authenticate (its controllers have no dhchap_secret), or ''."""
    if sh(host, f"test -e /sys/class/nvme/{shlex.quote(controller)}/dhchap_secret && echo yes || true").strip():
        return ""
    return f"{host.node}: nvme controllers have no dhchap_secret (host kernel without NVME_AUTH)"
