"""Run the smoke slice on each chosen release pair, one emulated lab after another.

Per pair: boot the lab (its own state under ``<cache>/matrix``, so a lab the
user runs is never touched), collect the acceptance tests against its topology,
run the smoke slice in a pytest of its own (full HTML report and results JSON in
the pair's directory), stop the lab. ``matrix.json`` and ``matrix.html`` are
rewritten after every pair, so a run killed half-way leaves the pairs done so
far and marks the one it was in as interrupted; its pytest child is stopped with
SIGINT first, so the drivers undo what they set up, then the lab goes down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabqual.errors import FabqualError
from fabqual.executors.child import end_child
from fabqual.lab.image import cache_root
from fabqual.lab.lab import PAIR_ENV, EmulatedLab
from fabqual.lab.releases import Pair
from fabqual.matrix import smoke, table
from fabqual.results.run import load_results
from fabqual.topology import load_topology

Progress = Callable[[str], None]
PAIR_TIMEOUT_S = 3600.0  # one pair's smoke run under TCG on a loaded host; measured far less


@dataclass(frozen=True)
class MatrixRun:
    pairs: tuple[Pair, ...]
    tests: Path  # the acceptance tests directory
    out: Path  # this run's directory: matrix.json, matrix.html, one directory per pair
    pair_timeout: float = PAIR_TIMEOUT_S


def run_matrix(
    run: MatrixRun, progress: Progress, after_pair: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Every pair in turn; the matrix record (also written to ``run.out``, and given to ``after_pair``)."""
    if not run.tests.is_dir():
        raise FabqualError(f"no acceptance tests at {run.tests}; pass --tests with the suite's tests/acceptance")
    run.out.mkdir(parents=True, exist_ok=True)
    matrix: dict[str, Any] = {
        "schema": table.SCHEMA,
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": source_commit(run.tests),
        "patterns": list(smoke.SMOKE_PATTERNS),
        "smoke_env": dict(smoke.SMOKE_ENV),
        "pairs": [{"pair": pair.name, "state": "pending", "cells": []} for pair in run.pairs],
    }
    _write(run.out, matrix)
    for index, pair in enumerate(run.pairs):
        progress(f"matrix: pair {index + 1}/{len(run.pairs)} {pair.name} (target:host)")
        matrix["pairs"][index] = {"pair": pair.name, "state": "running", "cells": []}
        _write(run.out, matrix)
        try:
            matrix["pairs"][index] = run_pair(pair, run, progress)
        except BaseException:
            matrix["pairs"][index]["state"] = "interrupted"
            _write(run.out, matrix)
            raise
        _write(run.out, matrix)
        if after_pair is not None:
            after_pair(matrix)
    matrix["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _write(run.out, matrix)
    return matrix


def run_pair(pair: Pair, run: MatrixRun, progress: Progress) -> dict[str, Any]:
    directory = run.out / f"{pair.target}-{pair.host}"
    directory.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {"pair": pair.name, "target": pair.target, "host": pair.host}
    lab = EmulatedLab(cache=cache_root() / "matrix", progress=progress, pair=pair)
    lab.down()  # what a killed earlier matrix run left
    start = time.monotonic()
    try:
        link_types: list[str] = list(dict.fromkeys(str(link.type) for link in load_topology(lab.prepare()).links))
        try:
            topology = lab.ensure_up()
        except FabqualError as error:
            progress(f"matrix: {pair.name}: the lab did not come up: {error}")
            return {
                **entry,
                "state": "lab error",
                "error": str(error),
                "cells": table.lab_error_cells(link_types, str(error)),
            }
        entry["lab_up_s"] = round(time.monotonic() - start, 1)
        ids = smoke.select(_collect(topology, run.tests, directory))
        if not ids:
            return {**entry, "state": "no tests", "error": "the smoke slice selected no test", "cells": []}
        progress(f"matrix: {pair.name}: lab up in {entry['lab_up_s']:.0f}s; running {len(ids)} smoke tests")
        code = _pytest(topology, ids, directory, run.pair_timeout)
        results_file = directory / "results.json"
        if not results_file.is_file():
            why = f"pytest exited {code} and wrote no results (see {directory / 'pytest.log'})"
            return {**entry, "state": "run error", "error": why, "cells": table.lab_error_cells(link_types, why)}
        results = load_results(results_file)
        return {
            **entry,
            "state": "done",
            "pytest_exit": code,
            "seconds": round(time.monotonic() - start, 1),
            "report": f"{directory.name}/report.html",
            "results": f"{directory.name}/results.json",
            "cells": table.cells(results, link_types),
        }
    finally:
        lab.down()


def _collect(topology: Path, tests: Path, directory: Path) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [*argv, "--topology", str(topology), str(tests)], capture_output=True, text=True, env=_env(), check=False
    )
    (directory / "collect.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise FabqualError(f"collecting {tests} failed (exit {proc.returncode}); see {directory / 'collect.log'}")
    return smoke.collected_ids(proc.stdout)


def _pytest(topology: Path, ids: list[str], directory: Path, timeout: float) -> int:
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        "--topology", str(topology),
        "--html", str(directory / "report.html"), "--self-contained-html",
        "--junitxml", str(directory / "junit.xml"),
        *ids,
    ]  # fmt: skip
    env = {**_env(), **smoke.SMOKE_ENV, "FABQUAL_RESULTS_FILE": str(directory / "results.json")}
    with (directory / "pytest.log").open("w") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            return child.wait(timeout=timeout)
        except BaseException:
            # Killed, interrupted or out of time: let the child's teardown undo what it set up first.
            end_child(child, grace_s=120, signum=signal.SIGINT)
            raise


def source_commit(tests: Path) -> str | None:
    """The commit the tests were checked out at (``-dirty`` when changed), or None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(tests), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=False
        )
        status = subprocess.run(
            ["git", "-C", str(tests), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(PAIR_ENV, None)  # the topology given says which lab
    return env


def _write(out: Path, matrix: dict[str, Any]) -> None:
    for name, text in (
        ("matrix.json", json.dumps(matrix, indent=1) + "\n"),
        ("matrix.html", table.render_html(matrix)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)


__all__ = ["MatrixRun", "run_matrix", "run_pair", "source_commit"]
