"""Kill soak: N qualification runs stopped at random points by random signals, then one clean run.

    python benchmarks/bench_kill.py            # N = 20 (the issue's goal: 0 leaked objects)
    python benchmarks/bench_kill.py -n 5 --seed 7

Each of the N runs is ``pytest <one short row> --topology <emulated lab> -m <its link>``
(the link type chosen at random), stopped after a random delay by SIGKILL, SIGTERM or
SIGINT (a run still there 300 s after SIGTERM/SIGINT gets SIGKILL, the second Ctrl-C).
Then one run over one row of every link type must pass (thresholds loosened: this
measures cleanup, not speed). Recorded: what every node held before the first run vs
after the clean run (leaked objects, goal 0), the clean run's sweep time per node, and
vcsim processes and controller directories left. Uses the running emulated lab (``fabqual lab up``) or boots it.
Writes benchmarks/results/kill.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fabqual.lab import EmulatedLab
from fabqual.testing.leaks import (
    ROWS,
    acceptance,
    leaked,
    loose_profile,
    node_state,
    run_and_signal,
    vcsim_dirs,
    vcsim_processes,
)
from fabqual.topology import load_topology

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "kill.json"
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
SWEEP_LINE = re.compile(r"^fabqual sweep: (\w+): (.*) \((\d+\.\d) s\)$", re.M)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs to stop (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument("--max-delay", type=float, default=240.0, help="latest stop, seconds after start")
    parser.add_argument(
        "--budget", type=float, default=None, help="start no stopped run after this many seconds (then the clean run)"
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)

    lab = EmulatedLab(progress=_log)
    booted = not lab.is_running()
    lab.ensure_up(wait=True)
    topology = load_topology(lab.topology_path)
    result: dict[str, Any] = {
        "benchmark": "kill",
        "host": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "n": args.n,
        "seed": seed,
        "command": " ".join(sys.argv),
        "runs": [],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="fabqual-bench-kill-") as tmp:
            env = dict(os.environ, FABQUAL_FIO_RUNTIME_S="3", FABQUAL_REPORTS_DIR=tmp)
            env.pop("FABQUAL_TOPOLOGY", None)
            profile = loose_profile(Path(tmp) / "kill-soak.yaml")
            before = node_state(topology)
            vcsims_before = vcsim_processes()
            dirs_before = vcsim_dirs()
            started = time.monotonic()
            for number in range(1, args.n + 1):
                if args.budget is not None and time.monotonic() - started > args.budget:
                    _log(f"time budget of {args.budget:.0f}s spent after {number - 1} runs")
                    break
                link = rng.choice(sorted(ROWS))
                name = rng.choice(sorted(SIGNALS))
                delay = round(rng.uniform(5.0, args.max_delay), 1)
                start = time.monotonic()
                stopped = run_and_signal(
                    acceptance(lab.topology_path, profile, link, ROWS[link]),
                    REPO,
                    env,
                    after=delay,
                    signum=SIGNALS[name],
                )
                run = {
                    "link": link,
                    "signal": name,
                    "delay_s": delay,
                    "signalled": stopped.signalled,
                    "returncode": stopped.returncode,
                    "seconds": round(time.monotonic() - start, 1),
                    "sweep": [m.group(2) for m in SWEEP_LINE.finditer(stopped.output)],
                }
                result["runs"].append(run)
                _log(f"run {number}/{args.n}: {link} {name} at {delay}s -> exit {stopped.returncode}")
                RESULTS.with_suffix(".partial.json").write_text(json.dumps(result, indent=2) + "\n")
            result["n_done"] = len(result["runs"])
            start = time.monotonic()
            rows = [ROWS[link] for link in sorted(ROWS)]
            clean = run_and_signal(acceptance(lab.topology_path, profile, " or ".join(sorted(ROWS)), *rows), REPO, env)
            summary = re.findall(r"=+ (.*(?:passed|failed|error).*) in [\d.]+s", clean.output)
            result["clean_run"] = {
                "returncode": clean.returncode,
                "summary": summary[-1] if summary else "",
                "seconds": round(time.monotonic() - start, 1),
                "sweep": {
                    m.group(1): {"seconds": float(m.group(3)), "line": m.group(2)}
                    for m in SWEEP_LINE.finditer(clean.output)
                },
            }
            if clean.returncode != 0:
                result["clean_run"]["tail"] = clean.output[-4000:]
            leaks = leaked(before, node_state(topology))
            vcsims = [p for p in vcsim_processes(settle=30) if p not in vcsims_before]
            vcsims += [f"controller: {d}" for d in vcsim_dirs() if d not in dirs_before]
            result["leaked_objects"] = len(leaks) + len(vcsims)
            result["leaked"] = leaks + vcsims
    finally:
        if booted:
            lab.down()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    RESULTS.with_suffix(".partial.json").unlink(missing_ok=True)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0 if result["leaked_objects"] == 0 and result["clean_run"]["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
