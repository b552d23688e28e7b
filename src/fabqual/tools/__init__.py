"""Tool runners and parsers: fio, perftest, iperf3, ping.

Each tool module has a pure ``parse_*`` (text → frozen record, ParseError on a
missing, zero or unparsable number) and a thin ``run_*`` that builds the exact
command line, runs it through an :class:`~fabqual.executors.base.Executor` with a
timeout derived from the runtime, and parses what came back.
"""

from fabqual.tools.fio import FioDirection, FioJob, FioResult, parse_fio, run_fio
from fabqual.tools.iperf3 import Iperf3Result, parse_iperf3, run_iperf3
from fabqual.tools.perftest import (
    BwRow,
    LatRow,
    PerftestResult,
    parse_perftest,
    parse_perftest_json,
    read_perftest_json,
    run_perftest,
)
from fabqual.tools.ping import PingResult, parse_ping, run_ping

__all__ = [
    "BwRow",
    "FioDirection",
    "FioJob",
    "FioResult",
    "Iperf3Result",
    "LatRow",
    "PerftestResult",
    "PingResult",
    "parse_fio",
    "parse_iperf3",
    "parse_perftest",
    "parse_perftest_json",
    "parse_ping",
    "read_perftest_json",
    "run_fio",
    "run_iperf3",
    "run_perftest",
    "run_ping",
]
