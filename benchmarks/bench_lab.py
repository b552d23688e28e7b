"""Benchmark the emulated lab per release: image build (cold, cached) and `lab up` to both guests on SSH.

    python benchmarks/bench_lab.py                      # every release and the bookworm:trixie pair
    python benchmarks/bench_lab.py --releases trixie --pairs bullseye:trixie
    python benchmarks/bench_lab.py --cold               # also rebuild each image in a scratch cache (minutes each)

Writes benchmarks/results/lab.json and prints it. Needs root, like the lab.
Without ``--cold`` the cold numbers are those the cached image recorded when it
was built (its image.json, with the load average then unknown); with it, each
release is built again in ``<cache>/bench-cold`` (removed afterwards), one at a
time, so the user's cached images are never touched. Each boot uses a lab state
dir of its own. The load average is recorded beside every timing: the host is
shared, and TCG guests boot slower on a busy one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from fabqual.lab import EmulatedLab
from fabqual.lab.image import cache_root, ensure_image
from fabqual.lab.releases import RELEASES, Pair
from fabqual.lab.vm import find_stray

RESULTS = Path(__file__).resolve().parent / "results" / "lab.json"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cold_build(release: str) -> dict[str, Any]:
    scratch = cache_root() / "bench-cold"
    shutil.rmtree(scratch, ignore_errors=True)
    saved = os.environ.get("FABQUAL_CACHE")
    os.environ["FABQUAL_CACHE"] = str(scratch)
    load_before = _load()
    try:
        start = time.monotonic()
        image = ensure_image(release, _log)
        seconds = time.monotonic() - start
        info = image.info()
    finally:
        if saved is None:
            del os.environ["FABQUAL_CACHE"]
        else:
            os.environ["FABQUAL_CACHE"] = saved
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "seconds": round(seconds, 1),
        "steps": info["step_seconds"],
        "initrd_bytes": info["initrd_bytes"],
        "load_before": load_before,
        "load_after": _load(),
        "measured": "now, in a scratch cache",
    }


def image_record(release: str, cold: bool) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if cold:
        record["build_cold"] = cold_build(release)
    start = time.monotonic()
    image = ensure_image(release, _log)  # builds here too if the cache has none
    record["build_cached_s"] = round(time.monotonic() - start, 2)
    info = image.info()
    if not cold:
        record["build_cold"] = {
            "seconds": round(sum(info["step_seconds"].values()), 1),
            "steps": info["step_seconds"],
            "measured": "when the cached image was built (its image.json)",
        }
    record["image"] = {
        "key": image.key,
        "kernel_abi": image.abi,
        "kernel_version": image.kernel_version,
        "initrd_bytes": image.initrd.stat().st_size,
        "kernel_bytes": image.kernel.stat().st_size,
        "oot_modules": info.get("oot_modules"),
        "patches": info.get("patches"),
        "modules_absent": info.get("modules_absent"),
    }
    return record


def lab_up(pair: Pair) -> dict[str, Any]:
    """Boot ``pair`` in a lab state dir of its own (images already cached), then stop it."""
    lab = EmulatedLab(cache=cache_root() / "bench-lab", progress=_log, pair=pair)
    lab.down()
    lab.prepare()
    record: dict[str, Any] = {"load_before": _load()}
    start = time.monotonic()
    try:
        lab.ensure_up()  # returns once both guests ran a command through the SSH executor
        record["lab_up_to_ssh_s"] = round(time.monotonic() - start, 1)
        record["accel"] = lab.status().accel
    finally:
        record["load_after"] = _load()
        start = time.monotonic()
        lab.down()
        record["lab_down_s"] = round(time.monotonic() - start, 1)
    record["qemu_left_after_down"] = len(find_stray(lab.run_dir))
    shutil.rmtree(lab.cache.parent, ignore_errors=True)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--releases", default=",".join(RELEASES), help="releases to build and boot (both guests)")
    parser.add_argument("--pairs", default="bookworm:trixie", help="mixed TARGET:HOST pairs to boot too")
    parser.add_argument("--cold", action="store_true", help="also rebuild every image in a scratch cache")
    args = parser.parse_args()
    releases = [Pair.parse(r).target for r in args.releases.split(",") if r]
    pairs = [Pair(r, r) for r in releases] + [Pair.parse(p) for p in args.pairs.split(",") if p]

    result: dict[str, Any] = {
        "benchmark": "lab",
        "host": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "goal": "cached lab up of any pair <= 20 s on a quiet host",
        "images": {release: image_record(release, args.cold) for release in releases},
        # Another lab (other worktrees' labs share this host) is neither reused nor stopped; its load shows.
        "other_lab_running": EmulatedLab().is_running(),
        "lab_up": {pair.name: lab_up(pair) for pair in pairs},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
