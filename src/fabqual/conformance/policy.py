"""The ``conformance:`` section of a thresholds profile: each case's level and time bounds.

::

    conformance:
      discovery.persistent_aen:
        level: mandatory            # or informational: shown, not counted in the verdict
        note: why this level
        times:                      # measured times (seconds), checked like every metric
          aen_s: {max: 30, note: where the bound comes from}

Pure data and validation; the plugin (:mod:`fabqual.plugin.conformance`) reads it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["mandatory", "informational"]
LEVELS: tuple[Level, ...] = ("mandatory", "informational")
TIME_UNIT = "s"

CASE_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
TIME_NAME = re.compile(r"^[a-z][a-z0-9_]*_s$")

Fail = Callable[[str, str], Exception]


@dataclass(frozen=True)
class TimeBound:
    """A measured time's upper bound, and where the number comes from."""

    maximum: float
    note: str
    where: str  # "emulated.yaml: conformance.discovery.persistent_aen.times.aen_s"


@dataclass(frozen=True)
class CasePolicy:
    case: str
    level: Level
    note: str
    times: dict[str, TimeBound]
    where: str

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"


def check_case_name(case: str) -> str:
    """Why ``case`` is not a case name (``<category>.<name>``, lower case), or ''."""
    if not isinstance(case, str) or not CASE_NAME.match(case):
        return f"{case!r} is not <category>.<name> in lower case (e.g. discovery.generation_counter)"
    return ""


def parse_conformance(section: Any, file_name: str, fail: Fail) -> dict[str, CasePolicy]:
    """The validated section; ``fail(key, message)`` builds the error naming file and key."""
    if not isinstance(section, dict) or not section:
        raise fail("conformance", "must map case names (<category>.<name>) to their level and time bounds")
    policies: dict[str, CasePolicy] = {}
    for case, item in section.items():
        key = f"conformance.{case}"
        problem = check_case_name(case)
        if problem:
            raise fail(key, problem)
        if not isinstance(item, dict):
            raise fail(key, "must be a mapping with level, note and optional times")
        unknown = set(item) - {"level", "note", "times"}
        if unknown:
            raise fail(f"{key}.{sorted(unknown)[0]}", "unknown key; expected level, note, times")
        level = item.get("level")
        if level not in LEVELS:
            raise fail(f"{key}.level", f"is {level!r}; expected {' or '.join(LEVELS)}")
        note = _note(item, key, fail)
        times = item.get("times", {})
        if not isinstance(times, dict):
            raise fail(f"{key}.times", "must map time names (ending in _s) to {max: seconds, note: ...}")
        bounds = {
            str(name): _time(name, bound, f"{key}.times.{name}", file_name, fail) for name, bound in times.items()
        }
        policies[case] = CasePolicy(case, level, note, bounds, f"{file_name}: {key}")
    return policies


def _note(item: dict[str, Any], key: str, fail: Fail) -> str:
    note = item.get("note")
    if not isinstance(note, str) or not note.strip():
        raise fail(f"{key}.note", "say why (a measurement, the specification, a judgment)")
    return " ".join(note.split())


def _time(name: Any, bound: Any, key: str, file_name: str, fail: Fail) -> TimeBound:
    if not isinstance(name, str) or not TIME_NAME.match(name):
        raise fail(key, f"{name!r} is not a time name: lower case, ending in _s (seconds), e.g. aen_s")
    if not isinstance(bound, dict) or set(bound) - {"max", "note"}:
        raise fail(key, "must be {max: seconds, note: where the bound comes from}")
    value = bound.get("max")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise fail(f"{key}.max", f"is {value!r}; give a positive number of seconds")
    return TimeBound(float(value), _note(bound, key, fail), f"{file_name}: {key}")
