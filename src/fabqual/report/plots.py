"""Plots for the report as inline SVG: a number against block size, message size or MTU.

Written by hand rather than with a plotting library so the report stays one
self-contained file with no scripts and nothing fetched. A chart is drawn for
every (link, metric) measured at two or more sizes; the size axis is ordinal
(4k, 64k, 1m are spaced evenly), the threshold is a dashed line, and each
point is green or red by its own verdict.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from html import escape
from typing import Any

# Context keys that are a size or an MTU, in the order they are preferred as x axis.
X_KEYS = ("bs", "block_size", "size", "msg_size", "message_size", "mtu")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
PALETTE = ("#1f5fa8", "#c25b00", "#6a3d9a", "#2b8a3e", "#8c564b", "#d6336c")
PASS_COLOR, FAIL_COLOR = "#2b8a3e", "#c92a2a"


def size_value(text: str) -> float | None:
    """``4k`` → 4096, ``1500`` → 1500, ``64KiB`` → 65536; None when it is not a size."""
    match = _SIZE.match(str(text))
    if not match:
        return None
    return float(match.group(1)) * _SCALE[match.group(2).lower()]


@dataclass(frozen=True)
class Chart:
    title: str
    svg: str


def charts_for(metrics: list[dict[str, Any]]) -> list[Chart]:
    """One chart per (link, metric, size key) with at least two sizes; series split by the other context keys."""
    groups: dict[tuple[str, str, str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for m in metrics:
        context = m.get("context", {})
        x_key = next((k for k in X_KEYS if k in context and size_value(context[k]) is not None), None)
        if x_key is None:
            continue
        series = " ".join(f"{k}={v}" for k, v in sorted(context.items()) if k != x_key) or m["metric"]
        groups[(m["link"], m["link_type"], m["metric"], x_key)][series].append(m)
    charts = []
    for (link, link_type, metric, x_key), series in sorted(groups.items()):
        sizes = {m["context"][x_key] for points in series.values() for m in points}
        if len(sizes) < 2:
            continue
        unit = next(iter(series.values()))[0]["unit"]
        title = f"{link} ({link_type}): {metric} vs {'MTU' if x_key == 'mtu' else x_key}"
        charts.append(Chart(title, line_chart(title, x_key, f"{metric} [{unit}]", series)))
    return charts


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def line_chart(title: str, x_label: str, y_label: str, series: dict[str, list[dict[str, Any]]]) -> str:
    """An SVG line chart of measurement dicts (``value``, ``threshold``, ``passed``, ``context``)."""
    width, height, left, right, top, bottom = 640, 300, 70, 150, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    labels = sorted(
        {m["context"][x_label] for points in series.values() for m in points},
        key=lambda s: size_value(s) or 0.0,
    )
    xs = {label: left + (i + 0.5) * plot_w / len(labels) for i, label in enumerate(labels)}
    finite = [v for ps in series.values() for m in ps for v in (m["value"], m["threshold"]) if math.isfinite(v)]
    y_max = _nice_max(max(finite, default=1.0) * 1.05)

    def y(value: float) -> float:
        value = min(max(value, 0.0), y_max) if math.isfinite(value) else 0.0
        return top + plot_h * (1 - value / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fabqual-chart" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#999"/>',
    ]
    for i in range(6):
        value = y_max * i / 5
        yy = y(value)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end">{value:.4g}</text>')
    for label, xx in xs.items():
        out.append(
            f'<text x="{xx:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">{escape(label)}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="12" text-anchor="middle">'
        f"{escape('MTU [bytes]' if x_label == 'mtu' else x_label)}</text>"
    )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" font-size="12" text-anchor="middle"'
        f' transform="rotate(-90 14 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    legend_y = top + 10
    for index, (name, points) in enumerate(sorted(series.items())):
        color = PALETTE[index % len(PALETTE)]
        ordered = sorted(points, key=lambda m: size_value(m["context"][x_label]) or 0.0)
        line = " ".join(f"{xs[m['context'][x_label]]:.1f},{y(m['value']):.1f}" for m in ordered)
        limit = " ".join(f"{xs[m['context'][x_label]]:.1f},{y(m['threshold']):.1f}" for m in ordered)
        out.append(f'<polyline points="{limit}" fill="none" stroke="{color}" stroke-dasharray="5,4" opacity="0.7"/>')
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
        for m in ordered:
            fill = PASS_COLOR if m.get("passed") else FAIL_COLOR
            xx, yy = xs[m["context"][x_label]], y(m["value"])
            out.append(
                f'<circle cx="{xx:.1f}" cy="{yy:.1f}" r="4" fill="{fill}" stroke="white">'
                f"<title>{escape(name)} {escape(m['context'][x_label])}: {m['value']:.4g} {escape(m['unit'])}"
                f" (threshold {m['comparison']} {m['threshold']:.4g})</title></circle>"
            )
        lx = left + plot_w + 10
        out.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{legend_y}" y2="{legend_y}" stroke="{color}" stroke-width="2"/>'
        )
        out.append(f'<text x="{lx + 22}" y="{legend_y + 4}" font-size="11">{escape(name[:22])}</text>')
        legend_y += 16
    lx = left + plot_w + 10
    out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{legend_y}" y2="{legend_y}" stroke="#555" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{lx + 22}" y="{legend_y + 4}" font-size="11">threshold</text>')
    out.append("</svg>")
    return "\n".join(out)
