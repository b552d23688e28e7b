"""Run against run: each metric against the previous run and a baseline, regressions flagged.

A metric regressed when it moved in its bad direction by more than its allowed
deviation: for a ``>=`` metric (bandwidth, IOPS) when it fell below
``reference * (1 - deviation)``; for a ``<=`` metric (latency) when it rose above
``reference * (1 + deviation)``. Improvements are never flagged. The allowed
deviation is per metric (see :func:`load_deviations`), else a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fabqual.errors import FabqualError
from fabqual.results.run import Results, metric_key

DEFAULT_DEVIATION = 0.10


@dataclass(frozen=True)
class MetricDelta:
    """One metric of the current run next to the same metric in the reference runs."""

    key: str
    link_type: str
    metric: str
    unit: str
    comparison: str
    current: float | None
    previous: float | None
    baseline: float | None
    allowed: float
    regressed_vs: tuple[str, ...]  # "previous", "baseline"

    @property
    def status(self) -> str:
        if self.current is None:
            return "MISSING"
        if self.regressed_vs:
            return "REGRESSED"
        if self.previous is None and self.baseline is None:
            return "NEW"
        return "ok"

    def change(self, reference: float | None) -> float | None:
        """Relative change from ``reference`` (+ is more), or None without both numbers."""
        if reference is None or self.current is None or reference == 0:
            return None
        return self.current / reference - 1.0


def load_deviations(path: str | Path) -> dict[str, float]:
    """Allowed deviations from a YAML file with a top-level ``deviations:`` mapping.

    Keys are ``metric`` or ``link_type.metric`` (the more specific wins), values
    fractions: ``{iops: 0.15, fc_nvme.lat_us: 0.25}``. A thresholds profile may
    carry the same section, so one file can hold both.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FabqualError(f"deviations file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as error:
        raise FabqualError(f"deviations file {path} is not readable YAML: {error}") from None
    section = data.get("deviations", {}) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise FabqualError(f"{path}: deviations: expected a mapping of metric to fraction, got {section!r}")
    out: dict[str, float] = {}
    for key, value in section.items():
        if not isinstance(value, int | float) or not 0 <= value < 10:
            raise FabqualError(f"{path}: deviations.{key}: {value!r} is not a fraction like 0.1")
        out[str(key)] = float(value)
    return out


def allowed_deviation(link_type: str, metric: str, deviations: Mapping[str, float], default: float) -> float:
    return deviations.get(f"{link_type}.{metric}", deviations.get(metric, default))


def _regressed(current: float, reference: float, comparison: str, allowed: float) -> bool:
    if comparison == ">=":
        return current < reference * (1.0 - allowed)
    return current > reference * (1.0 + allowed)


def _index(results: Results | None) -> dict[str, dict[str, Any]]:
    if results is None:
        return {}
    return {metric_key(m): m for m in results.get("metrics", [])}


def compare_runs(
    current: Results,
    previous: Results | None,
    baseline: Results | None = None,
    *,
    deviations: Mapping[str, float] | None = None,
    default_deviation: float = DEFAULT_DEVIATION,
) -> list[MetricDelta]:
    """Every metric of ``current`` (and those the references had but ``current`` lost)."""
    deviations = deviations or {}
    now, before, base = _index(current), _index(previous), _index(baseline)
    rows: list[MetricDelta] = []
    for key in sorted(set(now) | set(before) | set(base)):
        sample = now.get(key) or before.get(key) or base[key]
        allowed = allowed_deviation(sample["link_type"], sample["metric"], deviations, default_deviation)
        value = now[key]["value"] if key in now else None
        refs = {"previous": before.get(key, {}).get("value"), "baseline": base.get(key, {}).get("value")}
        regressed = tuple(
            name
            for name, ref in refs.items()
            if value is not None and ref is not None and _regressed(value, ref, sample["comparison"], allowed)
        )
        rows.append(
            MetricDelta(
                key=key,
                link_type=sample["link_type"],
                metric=sample["metric"],
                unit=sample["unit"],
                comparison=sample["comparison"],
                current=value,
                previous=refs["previous"],
                baseline=refs["baseline"],
                allowed=allowed,
                regressed_vs=regressed,
            )
        )
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"({value:+.1%})"


def format_table(rows: list[MetricDelta], *, with_baseline: bool) -> str:
    """The comparison as aligned text, one metric per line."""
    header = ["metric", "unit", "current", "previous", "change"]
    if with_baseline:
        header += ["baseline", "change"]
    header += ["allowed", "status"]
    lines = [header]
    for row in rows:
        cells = [row.key, row.unit, _num(row.current), _num(row.previous), _pct(row.change(row.previous))]
        if with_baseline:
            cells += [_num(row.baseline), _pct(row.change(row.baseline))]
        status = row.status + (f" vs {'+'.join(row.regressed_vs)}" if row.regressed_vs else "")
        cells += [f"±{row.allowed:.0%}", status]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)
