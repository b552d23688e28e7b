"""An assessment as aligned text for ``fabqual compare --results-db``."""

from __future__ import annotations

from fabqual.history.assess import Assessment


def format_history(assessment: Assessment) -> str:
    lines = [["metric", "unit", "value", "baseline", "allowed", "n", "change", "threshold", "history"]]
    for m in assessment.metrics:
        base = m.baseline
        lines.append(
            [
                m.key,
                m.unit,
                f"{m.value:.4g}",
                f"{base.median:.4g}" if base else "-",
                f"±{base.allowed:.3g}" if base else "",
                str(base.samples) if base else "0",
                f"{m.change:+.1%}" if m.change is not None else "",
                "passed" if m.passed else "FAILED",
                "REGRESSION" if m.regressed else ("ok" if base else "no baseline"),
            ]
        )
    for row in assessment.rows:
        if row.known or row.flaky:
            marks = [f"known issue {row.known.id} {row.known.tracker}".strip()] if row.known else []
            marks += ["waived"] if row.waived else []
            marks += ["flaky"] if row.flaky else []
            lines.append([row.nodeid, "", row.outcome, "", "", "", "", "", ", ".join(marks)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
