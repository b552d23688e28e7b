"""Benchmark the emulated lab: image build (cold and cached) and `lab up` to both guests on SSH.

    python benchmarks/bench_lab.py            # cold build in a scratch cache, then cached, then boot
    python benchmarks/bench_lab.py --no-cold  # skip the cold build (minutes)

Writes benchmarks/results/lab.json and prints it. Needs root, like the lab.
The cold build goes to ``<cache>/bench-cold`` and is removed afterwards, so
the user's cached image is never touched; the boot uses a lab state dir of its own.
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
from fabqual.lab.vm import find_stray

RESULTS = Path(__file__).resolve().parent / "results" / "lab.json"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cold_build() -> dict[str, Any]:
    scratch = cache_root() / "bench-cold"
    shutil.rmtree(scratch, ignore_errors=True)
    saved = os.environ.get("FABQUAL_CACHE")
    os.environ["FABQUAL_CACHE"] = str(scratch)
    try:
        start = time.monotonic()
        image = ensure_image(_log)
        seconds = time.monotonic() - start
        info = image.info()
    finally:
        if saved is None:
            del os.environ["FABQUAL_CACHE"]
        else:
            os.environ["FABQUAL_CACHE"] = saved
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": round(seconds, 1), "steps": info["step_seconds"], "initrd_bytes": info["initrd_bytes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cold", action="store_true", help="skip the cold image build")
    args = parser.parse_args()

    result: dict[str, Any] = {
        "benchmark": "lab",
        "host": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if not args.no_cold:
        result["image_build_cold"] = cold_build()

    start = time.monotonic()
    image = ensure_image(_log)  # builds here too if the real cache is empty
    result["image_build_cached_s"] = round(time.monotonic() - start, 2)
    result["image"] = {
        "key": image.key,
        "kernel_abi": image.abi,
        "initrd_bytes": image.initrd.stat().st_size,
        "kernel_bytes": image.kernel.stat().st_size,
    }

    # A lab of its own (state under <cache>/bench-lab, image shared): the user's lab,
    # if one runs, is neither reused nor stopped; its load is recorded instead.
    result["other_lab_running"] = EmulatedLab().is_running()
    lab = EmulatedLab(cache=cache_root() / "bench-lab", progress=_log)
    lab.down()
    lab.prepare()
    start = time.monotonic()
    try:
        lab.ensure_up()  # returns once both guests ran a command through the SSH executor
        result["lab_up_to_ssh_s"] = round(time.monotonic() - start, 1)
        result["accel"] = lab.status().accel
    finally:
        start = time.monotonic()
        lab.down()
        result["lab_down_s"] = round(time.monotonic() - start, 1)
    result["qemu_left_after_down"] = len(find_stray(lab.run_dir))
    shutil.rmtree(lab.cache.parent, ignore_errors=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
