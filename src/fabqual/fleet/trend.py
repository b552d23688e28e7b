"""A metric's trend over the last nights as inline SVG: values, threshold, the history band, flags.

One point per run (oldest left); the shaded band is the baseline learned from
the runs before each point (median ± allowed deviation), the dashed line the
fixed threshold. A regression is a red ring, a threshold failure a red dot,
a run with a known issue on this metric's test a "K" above its point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from fabqual.history.baseline import Baseline
from fabqual.report.plots import _nice_max

PASS_COLOR, FAIL_COLOR, BAND_COLOR, LINE_COLOR = "#2b8a3e", "#c92a2a", "#a5d8ff", "#1f5fa8"


@dataclass(frozen=True)
class Point:
    run_key: str
    label: str  # short date
    value: float
    threshold: float | None
    passed: bool
    baseline: Baseline | None
    regressed: bool
    known: str = ""  # id of a known issue that matched this metric's test in this run


def trend_chart(title: str, unit: str, points: list[Point]) -> str:
    width, height, left, right, top, bottom = 560, 220, 64, 16, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [v for p in points for v in (p.value, p.threshold or 0.0) if math.isfinite(v)]
    finite += [p.baseline.high for p in points if p.baseline is not None]
    y_max = _nice_max(max(finite, default=1.0) * 1.05)
    step = plot_w / max(1, len(points))

    def x(index: int) -> float:
        return left + (index + 0.5) * step

    def y(value: float) -> float:
        value = min(max(value, 0.0), y_max) if math.isfinite(value) else 0.0
        return top + plot_h * (1 - value / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fleet-trend" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fcfcfc" stroke="#999"/>',
    ]
    for i in range(5):
        value = y_max * i / 4
        out.append(f'<text x="{left - 5}" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end">{value:.3g}</text>')
    banded = [(i, p.baseline) for i, p in enumerate(points) if p.baseline is not None]
    if banded:
        upper = [f"{x(i) - step / 2:.1f},{y(b.high):.1f} {x(i) + step / 2:.1f},{y(b.high):.1f}" for i, b in banded]
        lower = [f"{x(i) + step / 2:.1f},{y(b.low):.1f} {x(i) - step / 2:.1f},{y(b.low):.1f}" for i, b in banded[::-1]]
        out.append(
            f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{BAND_COLOR}" opacity="0.5">'
            "<title>baseline: median ± allowed deviation of earlier passing runs</title></polygon>"
        )
    limits = [(i, p.threshold) for i, p in enumerate(points) if p.threshold is not None]
    if limits:
        line = " ".join(f"{x(i):.1f},{y(t):.1f}" for i, t in limits)
        out.append(f'<polyline points="{line}" fill="none" stroke="#555" stroke-dasharray="5,4"/>')
    values = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
    out.append(f'<polyline points="{values}" fill="none" stroke="{LINE_COLOR}" stroke-width="1.5"/>')
    for i, p in enumerate(points):
        note = (" REGRESSION" if p.regressed else "") + ("" if p.passed else " THRESHOLD FAILED")
        note += f" known issue {p.known}" if p.known else ""
        base = f"; baseline {p.baseline.median:.4g} ± {p.baseline.allowed:.3g}" if p.baseline else ""
        fill = PASS_COLOR if p.passed else FAIL_COLOR
        out.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="3" fill="{fill}">'
            f"<title>{escape(p.run_key)}: {p.value:.4g} {escape(unit)}{base}{note}</title></circle>"
        )
        if p.regressed:
            out.append(
                f'<circle class="regression" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="7" fill="none"'
                f' stroke="{FAIL_COLOR}" stroke-width="2"/>'
            )
        if p.known:
            out.append(
                f'<text class="known" x="{x(i):.1f}" y="{y(p.value) - 10:.1f}" font-size="10"'
                f' text-anchor="middle" fill="#862e9c">K</text>'
            )
    for i in sorted({0, len(points) - 1}):
        if points:
            out.append(
                f'<text x="{x(i):.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle">'
                f"{escape(points[i].label)}</text>"
            )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">'
        f"last {len(points)} runs [{escape(unit)}]</text>"
    )
    out.append("</svg>")
    return "\n".join(out)
