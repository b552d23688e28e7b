"""Thresholds as data: versioned YAML profiles, looked up per link type, metric and context.

A profile file (``src/fabqual/data/thresholds/<profile>.yaml``, linked from
``topologies/thresholds/`` in a checkout; or any YAML file given by path)::

    version: 1
    profile: hardware
    description: what the numbers are for
    links:
      nvmet_rdma:
        bw_gbps:
          - min_fraction_of_line_rate: 0.9      # NVIDIA's perf suite: >= 0.9 x port rate
            unit: Gb/s
            note: where the number comes from
          - when: {size: [2, 4, 8]}             # selectors; a list matches any of its values
            min: 0.05
            unit: Gb/s
            note: ...

Lookup: the entries whose ``when`` selectors all match the context; the one with
the most selectors wins (two winners with as many selectors is an ambiguity and
an error). ``min`` and ``min_fraction_of_line_rate`` may both be given: the bound
is the larger of the two, and the fraction needs the line rate the link read from
its ports (:class:`fabqual.line_rate.LineRate`; the sysfs parsers are
:func:`fc_line_rate_gbps`, :func:`ib_line_rate_gbps`, :func:`net_line_rate_gbps`).
With several paths (NVMe multipath) ``line_rate: slowest`` (the default) takes the
slowest port, ``line_rate: sum`` what all paths carry together. A context with
``bidirectional: true`` doubles the line-rate target (both directions carry the
port rate); absolute bounds stay as written (give a ``when: {bidirectional:
true}`` entry for a different one).

A ``conformance:`` section gives each conformance case its level (mandatory or
informational) and the bounds of its measured times (:mod:`fabqual.conformance.policy`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fabqual.conformance.policy import CasePolicy, check_case_name, parse_conformance
from fabqual.errors import ParseError, ThresholdError, TopologyError
from fabqual.line_rate import COMBINE, Combine, LineRate
from fabqual.linkspec import link_spec, link_types
from fabqual.tools.declare import metrics as tool_metrics
from fabqual.topology.strict_yaml import parse, read_text

SCHEMA_VERSION = 1

Comparison = Literal[">=", "<="]

# Every metric a test may check: its unit and which way is good, as the tool modules declare them
# (fabqual.tools.declare). A profile entry must use this unit, and min/fraction only for ">="
# metrics, max only for "<=".
METRICS: dict[str, tuple[str, Comparison]] = {m.name: (m.unit, m.better) for m in tool_metrics().values()}

# A line rate (Gb/s) expressed in a metric's unit.
_FROM_GBPS = {"Gb/s": 1.0, "Mb/s": 1000.0, "MB/s": 125.0}

_ENTRY_KEYS = {"when", "min", "max", "min_fraction_of_line_rate", "line_rate", "unit", "note"}
_TRUE = {"true", "yes", "1", "on"}


@dataclass(frozen=True)
class Bound:
    """The threshold one measurement must meet, and where it came from."""

    threshold: float
    comparison: Comparison
    unit: str
    source: str


@dataclass(frozen=True)
class _Entry:
    when: tuple[tuple[str, frozenset[str]], ...]
    minimum: float | None
    maximum: float | None
    fraction: float | None
    combine: Combine  # how several paths' line rates make the one the fraction is of
    unit: str
    note: str
    where: str  # "emulated.yaml: links.fc_nvme.iops[2]"

    def matches(self, context: dict[str, str]) -> bool:
        return all(context.get(key) in values for key, values in self.when)


@dataclass(frozen=True)
class Thresholds:
    """One loaded profile."""

    profile: str
    source: str
    description: str
    entries: dict[tuple[str, str], tuple[_Entry, ...]]
    conformance: dict[str, CasePolicy] = field(default_factory=dict)

    def case_policy(self, case: str) -> CasePolicy:
        """The level and time bounds of conformance case ``case``; an error naming the file when it has none."""
        problem = check_case_name(case)
        if problem:
            raise ThresholdError(f"conformance case {problem}")
        policy = self.conformance.get(case)
        if policy is None:
            raise ThresholdError(
                f"thresholds profile {self.profile!r}: no conformance entry for case {case};"
                f" add conformance.{case} (level: mandatory or informational, note) to {self.source}"
            )
        return policy

    def metrics(self, link_type: str) -> tuple[str, ...]:
        return tuple(sorted(metric for link, metric in self.entries if link == link_type))

    def bound(
        self, link_type: str, metric: str, context: dict[str, str], line_rate: LineRate | float | None = None
    ) -> Bound:
        """The bound for ``metric`` on ``link_type`` in ``context``; ``line_rate`` as the link read it
        (a plain number is Gb/s)."""
        context_text = " ".join(f"{key}={value}" for key, value in context.items()) or "(no context)"
        what = f"thresholds profile {self.profile!r}: {link_type} {metric} {context_text}"
        entries = self.entries.get((link_type, metric))
        if not entries:
            raise ThresholdError(f"{what}: no entry for this metric; add one to {self.source}")
        normalized = {str(key): _norm(value) for key, value in context.items()}
        matching = [entry for entry in entries if entry.matches(normalized)]
        if not matching:
            raise ThresholdError(f"{what}: no entry matches; add one without 'when' to {self.source}")
        best = max(len(entry.when) for entry in matching)
        winners = [entry for entry in matching if len(entry.when) == best]
        if len(winners) > 1:
            names = ", ".join(entry.where for entry in winners)
            raise ThresholdError(f"{what}: ambiguous, {names} match equally; add an entry naming all their selectors")
        return _bound(winners[0], normalized, line_rate, what)


def _bound(entry: _Entry, context: dict[str, str], line_rate: LineRate | float | None, what: str) -> Bound:
    source = f"{entry.where}: {entry.note}"
    if entry.maximum is not None:
        return Bound(entry.maximum, "<=", entry.unit, source)
    candidates: list[tuple[float, str]] = []
    if entry.minimum is not None:
        candidates.append((entry.minimum, source))
    if entry.fraction is not None:
        unknown = ""
        if isinstance(line_rate, LineRate):
            try:
                line_rate = line_rate.gbps(entry.combine)
            except ThresholdError as error:
                line_rate, unknown = None, str(error)
        if line_rate is None or not math.isfinite(line_rate) or line_rate <= 0:
            if entry.minimum is None:
                raise ThresholdError(
                    f"{what}: {entry.where} is {entry.fraction:g} of the line rate, but the line rate is unknown: "
                    + (unknown or f"the link recorded none ({line_rate})")
                    + "; check the port's sysfs speed/rate or add an absolute 'min'"
                )
        else:
            both = context.get("bidirectional") in _TRUE
            target = entry.fraction * line_rate * (2 if both else 1) * _FROM_GBPS[entry.unit]
            how = f"{entry.fraction:g} x {line_rate:g} Gb/s line rate ({entry.combine})" + (
                " x 2 (bidirectional)" if both else ""
            )
            candidates.append((target, f"{source} [{how}]"))
    threshold, chosen = max(candidates)
    return Bound(threshold, ">=", entry.unit, chosen)


def _norm(value: Any) -> str:
    """Context and selector values compare as lower-case text (4K == 4k, True == true)."""
    return str(value).lower()


def load_thresholds(profile: str, directory: Path | None = None) -> Thresholds:
    """Load a profile: ``<directory>/<profile>.yaml`` (default: the profiles shipped with fabqual),
    or ``profile`` itself when it is the path of a YAML file (a rack's own thresholds)."""
    own = Path(profile).expanduser()
    if directory is None and own.suffix in (".yaml", ".yml") and own.is_file():
        path = own
    else:
        folder = directory if directory is not None else default_directory()
        path = folder / f"{profile}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
            raise TopologyError(
                str(path),
                "",
                f"no thresholds profile {profile!r}; available: {', '.join(known) or 'none'},"
                " or the path of a YAML file",
            )
    data = parse(read_text(path, "give a thresholds profile name or the path of a YAML file"), str(path))
    return _validate(data, path)


def default_directory() -> Path:
    """The profiles shipped in the package (``topologies/thresholds`` in a checkout links here)."""
    return Path(str(resources.files("fabqual") / "data" / "thresholds"))


def _validate(data: Any, path: Path) -> Thresholds:
    file = str(path)

    def fail(key: str, message: str) -> TopologyError:
        return TopologyError(file, key, message)

    if not isinstance(data, dict):
        raise fail("", "the file must be a mapping with version, profile and links")
    unknown = set(data) - {"version", "profile", "description", "links", "conformance"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key; expected version, profile, description, links, conformance")
    if data.get("version") != SCHEMA_VERSION:
        raise fail("version", f"is {data.get('version')!r}; this fabqual reads version {SCHEMA_VERSION}")
    if data.get("profile") != path.stem:
        raise fail("profile", f"is {data.get('profile')!r} but the file is {path.name}; they must agree")
    links = data.get("links")
    if not isinstance(links, dict) or not links:
        raise fail("links", "must map link types to their metrics")
    entries: dict[tuple[str, str], tuple[_Entry, ...]] = {}
    for link_type, metrics in links.items():
        if link_type not in link_types():
            raise fail(f"links.{link_type}", f"unknown link type; expected one of {', '.join(link_types())}")
        measured = link_spec(link_type).metrics
        if not isinstance(metrics, dict) or not metrics:
            raise fail(f"links.{link_type}", "must map metric names to lists of entries")
        for metric, items in metrics.items():
            key = f"links.{link_type}.{metric}"
            if metric not in METRICS:
                raise fail(key, f"unknown metric; expected one of {', '.join(METRICS)}")
            if metric not in measured:
                raise fail(key, f"{link_type} tests do not measure it; they measure {', '.join(measured)}")
            if not isinstance(items, list) or not items:
                raise fail(key, "must be a non-empty list of entries")
            parsed = tuple(_entry(item, metric, f"{key}[{i}]", path.name, fail) for i, item in enumerate(items))
            seen: dict[tuple[tuple[str, frozenset[str]], ...], int] = {}
            for i, entry in enumerate(parsed):
                if entry.when in seen:
                    raise fail(f"{key}[{i}].when", f"the same selectors as {key}[{seen[entry.when]}]")
                seen[entry.when] = i
            entries[(str(link_type), str(metric))] = parsed
    description = data.get("description", "")
    conformance = parse_conformance(data["conformance"], path.name, fail) if "conformance" in data else {}
    return Thresholds(
        profile=path.stem, source=file, description=str(description), entries=entries, conformance=conformance
    )


def _entry(item: Any, metric: str, key: str, file_name: str, fail: Any) -> _Entry:
    unit, comparison = METRICS[metric]
    if not isinstance(item, dict):
        raise fail(key, "must be a mapping (min/max/min_fraction_of_line_rate, unit, note, when)")
    unknown = set(item) - _ENTRY_KEYS
    if unknown:
        raise fail(f"{key}.{sorted(unknown)[0]}", f"unknown key; expected {', '.join(sorted(_ENTRY_KEYS))}")
    if item.get("unit") != unit:
        raise fail(f"{key}.unit", f"is {item.get('unit')!r}; {metric} is measured in {unit!r}")
    note = item.get("note")
    if not isinstance(note, str) or not note.strip():
        raise fail(f"{key}.note", "say where the number comes from (a measurement, a datasheet, a judgment)")

    def number(name: str) -> float | None:
        if name not in item:
            return None
        value = item[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise fail(f"{key}.{name}", f"is {value!r}, not a finite number")
        return float(value)

    minimum, maximum, fraction = number("min"), number("max"), number("min_fraction_of_line_rate")
    if comparison == "<=":
        if maximum is None or minimum is not None or fraction is not None:
            raise fail(key, f"{metric} is an upper bound: give 'max' (and no min or fraction)")
        if maximum < 0:
            raise fail(f"{key}.max", f"is {maximum:g}; it cannot be negative")
    else:
        if maximum is not None or (minimum is None and fraction is None):
            raise fail(key, f"{metric} is a lower bound: give 'min' and/or 'min_fraction_of_line_rate'")
        if minimum is not None and minimum <= 0:
            raise fail(f"{key}.min", f"is {minimum:g}; a lower bound of 0 lets a run that measured nothing pass")
        if fraction is not None:
            if not 0 < fraction <= 1:
                raise fail(f"{key}.min_fraction_of_line_rate", f"is {fraction:g}; it must be in (0, 1]")
            if unit not in _FROM_GBPS:
                raise fail(f"{key}.min_fraction_of_line_rate", f"{metric} ({unit}) is not a rate")
    combine = item.get("line_rate", "slowest")
    if combine not in COMBINE:
        raise fail(f"{key}.line_rate", f"is {combine!r}; expected {' or '.join(COMBINE)} (how paths add up)")
    if "line_rate" in item and fraction is None:
        raise fail(f"{key}.line_rate", "only means something with min_fraction_of_line_rate")
    return _Entry(
        when=_selectors(item.get("when", {}), f"{key}.when", fail),
        minimum=minimum,
        maximum=maximum,
        fraction=fraction,
        combine=combine,
        unit=unit,
        note=" ".join(note.split()),
        where=f"{file_name}: {key}",
    )


def _selectors(when: Any, key: str, fail: Any) -> tuple[tuple[str, frozenset[str]], ...]:
    if not isinstance(when, dict):
        raise fail(key, "must map context keys (rw, bs, qd, size, mtu, ...) to a value or a list of values")
    selectors = []
    for name, value in when.items():
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, dict | list) or v is None for v in values):
            raise fail(f"{key}.{name}", f"is {value!r}; give a value or a list of values")
        selectors.append((str(name), frozenset(_norm(v) for v in values)))
    return tuple(sorted(selectors, key=lambda pair: pair[0]))


# ---- line rates, from the sysfs text of the port (pure parsers) ----

_FC_SPEED = re.compile(r"^(\d+(?:\.\d+)?)\s*Gbit$")
_IB_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*Gb/sec(?:\s*\((\d+)X\s+(\w+)\))?$")


def fc_line_rate_gbps(speed: str) -> float | None:
    """Usable data rate of an FC port from ``/sys/class/fc_host/hostN/speed``.

    FC speed names are nominal: "NGFC" carries N x 100 MB/s per direction (8GFC
    800 MB/s with 8b/10b, 16GFC 1600 MB/s and 32GFC 3200 MB/s with 64b/66b at
    higher baud rates), so "16 Gbit" is 12.8 Gb/s of data. None when the port
    reports "unknown" (link down or not negotiated).
    """
    text = speed.strip()
    if text.lower() in {"unknown", "not negotiated", ""}:
        return None
    match = _FC_SPEED.match(text)
    if match is None:
        raise ParseError("fc_host speed", f"{text!r} is not 'N Gbit' or 'unknown'", speed)
    return float(match[1]) * 0.8


def ib_line_rate_gbps(rate: str) -> float | None:
    """Data rate of an RDMA port from ``/sys/class/infiniband/DEV/ports/N/rate``.

    "25 Gb/sec (1X EDR)" is 25. SDR/DDR/QDR rates are signalling rates with 8b/10b
    coding: "40 Gb/sec (4X QDR)" carries 32 Gb/s of data. FDR and later (64b/66b)
    are taken as printed, as NVIDIA's perf suite does. None for a 0 rate.
    """
    text = rate.strip()
    match = _IB_RATE.match(text)
    if match is None:
        raise ParseError("infiniband port rate", f"{text!r} is not 'N Gb/sec (WX SPEED)'", rate)
    value = float(match[1])
    if value <= 0:
        return None
    return value * 0.8 if match[3] in {"SDR", "DDR", "QDR"} else value


def net_line_rate_gbps(speed: str) -> float | None:
    """Line rate of a network interface from ``/sys/class/net/IF/speed`` (Mb/s).

    None for -1 (or its unsigned form 4294967295): unknown, e.g. virtio or link down.
    """
    text = speed.strip()
    try:
        value = int(text)
    except ValueError:
        raise ParseError("net speed", f"{text!r} is not an integer (Mb/s)", speed) from None
    if value <= 0 or value == 0xFFFFFFFF:
        return None
    return value / 1000.0
