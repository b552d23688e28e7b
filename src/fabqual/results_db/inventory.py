"""A run's testbed inventory as flat ``(node, item, value)`` rows, and the hash of its versions.

Two runs are "on the same versions" when every kernel, OS, driver, firmware and
tool version of every node, and fabqual's own version, are equal: the history
baseline only learns from such runs, so an upgrade starts a new baseline
instead of looking like a regression.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

VERSION_SUFFIXES = ("driver", "driver_version", "fw_ver", "fw_version", "firmware-version", "version", "build")
HOST_VERSION_ITEMS = ("kernel", "os", "arch")


def inventory_rows(testbed: dict[str, Any] | None) -> Iterator[tuple[str, str, str]]:
    """``(node, item, value)``: ``kernel``, ``rdma.rxe0.fw_ver``, ``tool.fio``, ``extra.vSphere.0.build``."""
    if not testbed:
        return
    for node in testbed.get("nodes", []):
        name = str(node.get("name", "?"))
        if node.get("error"):
            yield name, "error", str(node["error"])
        for key, value in sorted((node.get("facts") or {}).items()):
            yield name, str(key), str(value)
        for section, devices in sorted((node.get("devices") or {}).items()):
            for device, facts in sorted(devices.items()):
                for key, value in sorted(facts.items()):
                    yield name, f"{section}.{device}.{key}", str(value)
        for tool, version in sorted((node.get("tools") or {}).items()):
            yield name, f"tool.{tool}", str(version)
    for section, table in sorted((testbed.get("extra") or {}).items()):
        for index, row in enumerate(table):
            for key, value in sorted(row.items()):
                yield "-", f"extra.{section}.{index}.{key}", str(value)


def is_version_item(item: str) -> bool:
    return item in HOST_VERSION_ITEMS or item.startswith("tool.") or item.rsplit(".", 1)[-1] in VERSION_SUFFIXES


def versions_hash(testbed: dict[str, Any] | None, fabqual_version: str) -> str:
    """sha256 over every version item of every node (sorted), plus fabqual's version."""
    lines = sorted(f"{n}|{i}|{v}" for n, i, v in inventory_rows(testbed) if is_version_item(i))
    lines.append(f"fabqual|{fabqual_version}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
