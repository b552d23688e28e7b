"""The run report's "against history" section: regressions, known issues, waivers, flaky rows.

Rendered from an :class:`~fabqual.history.assess.Assessment`; a regression is
shown apart from a threshold failure (a metric can pass its threshold and
still have regressed against its own history).
"""

from __future__ import annotations

from html import escape

from fabqual.history.assess import Assessment


def marks_html(known: str, tracker: str, waived: bool, flaky: bool) -> str:
    """A failed row's marks: known issue (with its tracker link), waived, flaky; "-" without any."""
    marks = []
    if known:
        link = f' <a href="{escape(tracker)}">{escape(tracker)}</a>' if tracker else ""
        marks.append(f'<span class="known">known issue {escape(known)}</span>{link}')
    if waived:
        marks.append('<span class="known">waived (left out of the verdict)</span>')
    if flaky:
        marks.append('<span class="flaky">flaky (history alternates)</span>')
    return " ".join(marks) or "-"


def render_history_section(assessment: Assessment, database: str) -> str:
    based = [m for m in assessment.metrics if m.baseline is not None]
    parts = [
        '<section class="fabqual-history-db"><h2>Against history (results database)</h2>',
        f"<p>Rack {escape(assessment.rack)}, database {escape(database)}: {len(based)} of"
        f" {len(assessment.metrics)} metric(s) have a baseline learned from earlier passing runs on the same"
        f" versions; {len(assessment.regressions)} regressed. Verdict after waivers:"
        f" <b>{escape(assessment.verdict)}</b>.</p>",
    ]
    if assessment.regressions:
        parts.append(
            '<table class="regressions"><tr><th>metric</th><th>value</th><th>baseline (median ± allowed)</th>'
            "<th>change</th><th>fixed threshold</th><th>flag</th></tr>"
        )
        for m in assessment.regressions:
            assert m.baseline is not None
            change = f"{m.change:+.1%}" if m.change is not None else "-"
            parts.append(
                f"<tr><td>{escape(m.key)}</td><td>{m.value:.4g} {escape(m.unit)}</td>"
                f"<td>{m.baseline.median:.4g} ± {m.baseline.allowed:.3g} (n={m.baseline.samples})</td>"
                f"<td>{change}</td><td>{'passed' if m.passed else 'FAILED'}</td>"
                '<td class="regression">REGRESSION</td></tr>'
            )
        parts.append("</table>")
    marked = [r for r in assessment.rows if r.known or r.flaky]
    if marked:
        parts.append('<table class="row-marks"><tr><th>test</th><th>outcome</th><th>marks</th></tr>')
        for row in marked:
            issue = row.known
            cells = marks_html(issue.label if issue else "", issue.tracker if issue else "", row.waived, row.flaky)
            parts.append(f"<tr><td>{escape(row.nodeid)}</td><td>{escape(row.outcome)}</td><td>{cells}</td></tr>")
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)
