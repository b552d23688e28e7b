"""A port's fabric counters: read as sysfs files, compared before and after a row, the error ones checked.

What is read, one ``grep -H . DIR/*`` per counter set (the dump's layout is
``/sys/.../NAME:VALUE``):

- RDMA: ``/sys/class/infiniband/DEV/ports/N/hw_counters`` (the driver's own:
  rxe's ``out_of_seq_request``, ``retry_exceeded_err``; mlx5's
  ``out_of_sequence``, ``np_cnp_sent``, ...) and ``.../counters`` (the IB
  PortCounters every RNIC has: ``symbol_error``, ``port_rcv_errors``, ...;
  rxe has none);
- FC: ``/sys/class/fc_host/hostN/statistics`` (``link_failure_count``,
  ``loss_of_sync_count``, ``invalid_crc_count``, ...; hexadecimal, and
  all-ones where the HBA does not count it).

**Unknown is not zero**: a counter the port does not keep (all-ones, not a
number) is left out, and a counter set a port does not have at all is a
reason, never a row of zeros. Which counters are errors is a name rule
(:func:`is_error_counter`); the others (packets, bytes) only show the traffic.
Pure parsing and arithmetic; the reading is :mod:`fabqual.drivers.fabric_counters`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fabqual.errors import ParseError
from fabqual.tools.declare import Metric, ToolSpec

TOOL = "fabric counters"

SPEC = ToolSpec(
    "fabric_counters",
    probes=(),  # sysfs only: nothing to install
    metrics=(
        Metric(
            "fabric_errors",
            "count",
            "<=",
            "how much one error counter of a port the row crossed rose during the row (context: port, counter)",
        ),
    ),
)

# fc_host statistics the HBA does not keep read as all-ones (scsi_transport_fc prints -1 as u64 hex).
_NOT_KEPT = {0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF}

# Counter names that count something going wrong on the wire or in the transport: errors, retries,
# sequence gaps, duplicates, drops, link losses and congestion notifications (CNP: the fabric asked
# a sender to slow down). Everything else (packets, bytes, sends, seconds) is traffic.
_ERROR_NAME = re.compile(
    r"err|retry|retries|out_of_seq|seq_err|duplicate|discard|drop|dumped|downed|failure|loss_of|"
    r"invalid|symbol|integrity|overrun|abort|timeout|cnp|nos_count|rnr"
)
# Names that match the rule above but count no fault.
_NOT_ERRORS = {"lifespan", "ack_deferred", "seconds_since_last_reset", "reset_statistics"}


def is_error_counter(name: str) -> bool:
    """Whether a rise of counter ``name`` means something went wrong (or the fabric pushed back)."""
    return name not in _NOT_ERRORS and bool(_ERROR_NAME.search(name))


@dataclass(frozen=True)
class CounterSet:
    """One port's counters as read once: name → value (counters the port does not keep are absent)."""

    port: str  # "ini rxe0/1", "tgt host3"
    values: dict[str, int]


def parse_counter_dump(text: str, directory: str) -> dict[str, int]:
    """``grep -H . DIRECTORY/*`` → counter name → value (decimal or 0x hexadecimal).

    A line outside ``directory`` or without ``:`` is a ParseError (the dump
    is not what was asked for); a value that is not a number, or all-ones
    (not kept by this port), is left out.
    """
    prefix = directory.rstrip("/") + "/"
    values: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        path, sep, raw = line.partition(":")
        if not sep or not path.startswith(prefix):
            raise ParseError(TOOL, f"line {line!r} is not {prefix}NAME:VALUE", text)
        name = path[len(prefix) :]
        if "/" in name or not name:
            raise ParseError(TOOL, f"line {line!r} names no counter directly under {directory}", text)
        value = _number(raw.strip())
        if value is not None and value not in _NOT_KEPT:
            values[name] = value
    return values


def _number(raw: str) -> int | None:
    try:
        return int(raw, 16) if raw.lower().startswith("0x") else int(raw)
    except ValueError:
        return None


def rises(before: CounterSet, after: CounterSet) -> dict[str, int]:
    """How much each counter both snapshots have rose. A counter that went down was reset (a re-created
    port, a driver reload) in between: its rise is what it counts now, at least."""
    return {
        name: after.values[name] - value if after.values[name] >= value else after.values[name]
        for name, value in before.values.items()
        if name in after.values
    }


def error_rises(before: CounterSet, after: CounterSet) -> dict[str, int]:
    """The rises of the error counters only (see :func:`is_error_counter`)."""
    return {name: rise for name, rise in rises(before, after).items() if is_error_counter(name)}
