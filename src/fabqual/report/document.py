"""The qualification report's document sections, rendered from a results dict.

The pytest-html plugin puts these above its test table: verdict, testbed
inventory, metrics against thresholds, plots, history, skips and errors. They
are built from the same dict that is written as JSON, so the report and the
results file can never disagree. Plain HTML and inline SVG only: no scripts.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fabqual.report.plots import charts_for, size_value
from fabqual.results.compare import MetricDelta
from fabqual.results.run import OUTCOMES, Results

STYLE = """
<style>
.fq h2 { margin-top: 1.6em; border-bottom: 1px solid #bbb; }
.fq h3 { margin: 1em 0 0.3em; }
.fq table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 13px; }
.fq th, .fq td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
.fq th { background: #eef1f5; }
.fq td.num { text-align: right; font-variant-numeric: tabular-nums; }
.fq .PASS, .fq tr.pass td.verdict, .fq .ok { background: #d3f9d8; color: #1b5e20; font-weight: bold; }
.fq .FAIL, .fq tr.fail td.verdict, .fq .REGRESSED { background: #ffe3e3; color: #a51111; font-weight: bold; }
.fq .ERROR { background: #fff3bf; color: #7a5300; font-weight: bold; }
.fq .SKIPPED, .fq .NOT.RUN { background: #f1f3f5; color: #495057; font-weight: bold; }
.fq tr.fail td.margin { color: #a51111; font-weight: bold; }
.fq tr.pass td.margin { color: #1b5e20; }
.fq .banner { font-size: 20px; padding: 8px 14px; display: inline-block; border-radius: 4px; }
.fq .unreachable { color: #a51111; }
.fq .charts svg { margin: 0 12px 12px 0; border: 1px solid #ddd; background: white; }
</style>
"""


def _table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{row_classes[index]}"' if row_classes else ""
        body.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _td(text: Any, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def verdict_section(results: Results) -> str:
    run = results["run"]
    verdict = results["verdict"]
    meta = [
        ("Topology", f"{run.get('topology')} ({run.get('topology_file')})"),
        ("Thresholds profile", run.get("profile")),
        ("Started (UTC)", run.get("started")),
        ("Duration", f"{run.get('duration_s', 0):.0f} s"),
        ("Run id", run.get("id")),
        ("Run on", f"{run.get('user')}@{run.get('host')}"),
        ("fabqual / pytest", f"{run.get('fabqual_version')} / {run.get('pytest_version')}"),
        ("Command", run.get("command")),
    ]
    rows = [[_td(k), _td(v)] for k, v in meta]
    verdicts = results["verdicts"]
    vrows = [
        [
            _td(link_type),
            *(_td(counts.get(c, 0), "num") for c in ("planned", "run", *OUTCOMES)),
            _td(counts["verdict"], counts["verdict"]),
        ]
        for link_type, counts in sorted(verdicts.items())
    ]
    return (
        "<h2>Qualification verdict</h2>"
        f'<p><span class="banner {escape(verdict)}">Overall: {escape(verdict)}</span></p>'
        + _table(["Link type", "planned", "run", *OUTCOMES, "Verdict"], vrows)
        + "".join(f"<p>{escape(note)}</p>" for note in coverage_notes(results))
        + _table(["Run", ""], rows)
    )


def conformance_section(results: Results) -> str:
    """Per link: every conformance case with its category, level, verdict and measured times."""
    rows = results.get("conformance") or []
    if not rows:
        return ""
    parts = [
        "<h2>Conformance</h2>",
        "<p>The verdict counts mandatory cases only; an informational failure is shown here and not counted.</p>",
    ]
    for link in sorted({row["link"] for row in rows}):
        mine = [row for row in rows if row["link"] == link]
        table = []
        for row in mine:
            times = "; ".join(
                f"{t['metric']} {_num(t['value'])} {t['unit']} (<= {_num(t['threshold'])})"
                + ("" if t.get("passed") else " FAILED")
                for t in row["times"]
            )
            verdict = row["verdict"] + ("" if row["counted"] else " (not counted)")
            detail = row["reason"] if row["verdict"] != "PASS" else ""
            table.append(
                [
                    _td(row["case"]),
                    _td(row["category"]),
                    _td(row["level"]),
                    _td(verdict, row["verdict"]),
                    _td(times or "-"),
                    _td(detail),
                ]
            )
        parts.append(f"<h3>{escape(link)} ({escape(mine[0]['link_type'])})</h3>")
        parts.append(_table(["Case", "Category", "Level", "Verdict", "Measured times", "Reason"], table))
    return "".join(parts)


def coverage_notes(results: Results) -> list[str]:
    """What a reader must know before trusting the verdict: skipped rows, lost nodes, an informal run."""
    notes = []
    strict = bool(results["run"].get("strict"))
    for link_type, counts in sorted(results["verdicts"].items()):
        if counts.get("informational_failed"):
            notes.append(
                f"{link_type}: {counts['informational_failed']} informational conformance case(s) failed;"
                " shown in the conformance table, not counted in the verdict."
            )
        for node in counts.get("lost_nodes", []):
            notes.append(
                f"{link_type}: node {node} stopped answering during a test; the lab broke, rows after it are errors."
            )
        skipped = counts.get("skipped", 0)
        if skipped:
            reasons = "; ".join(f"{reason} ({n})" for reason, n in sorted(counts.get("skip_reasons", {}).items()))
            notes.append(f"{link_type}: {skipped} of {counts.get('planned', 0)} planned rows skipped: {reasons}")
    skipped_total = sum(c.get("skipped", 0) for c in results["verdicts"].values())
    strict_errors = sum(1 for t in results.get("tests", []) if "strict run: not applicable" in str(t.get("reason")))
    if strict and strict_errors:
        notes.append(f"Formal (--strict) run: {strict_errors} row(s) did not apply and count as errors.")
    elif not strict and skipped_total:
        notes.append(
            f"Not a formal run: {skipped_total} row(s) were skipped; a formal qualification runs with --strict."
        )
    return notes


_DEVICE_COLUMNS = {
    "fc_host": (
        "Fibre Channel HBAs",
        ["port_name", "node_name", "speed", "port_state", "model_name", "driver", "driver_version", "fw_version"],
    ),
    "rdma": (
        "RDMA devices",
        ["hca_type", "fw_ver", "board_id", "netdev", "port1.rate", "port1.state", "port1.link_layer"],
    ),
    "net": ("Network interfaces", ["driver", "version", "firmware-version", "bus-info", "speed", "mtu", "address"]),
}


def inventory_section(testbed: dict[str, Any] | None) -> str:
    if not testbed:
        return (
            "<h2>Testbed inventory</h2><p>Not collected: no test of this run reached the nodes"
            " (every test was deselected or skipped before the rack was used).</p>"
        )
    parts = ["<h2>Testbed inventory</h2>"]
    nodes = testbed.get("nodes", [])
    summary = []
    for node in nodes:
        facts = node.get("facts", {})
        state = "reachable" if node.get("reachable") else "UNREACHABLE"
        summary.append(
            [
                _td(node["name"]),
                _td(node.get("address")),
                _td(facts.get("hostname", "-")),
                _td(facts.get("kernel", "-")),
                _td(facts.get("os", "-")),
                _td(state, "" if node.get("reachable") else "unreachable"),
            ]
        )
    parts.append(_table(["Node", "Address", "Hostname", "Kernel", "OS", "State"], summary))
    for node in nodes:
        if node.get("error"):
            parts.append(f'<p class="unreachable">{escape(node["error"])}</p>')
    for section, (title, columns) in _DEVICE_COLUMNS.items():
        rows = []
        for node in nodes:
            for name, facts in sorted(node.get("devices", {}).get(section, {}).items()):
                rows.append([_td(node["name"]), _td(name), *(_td(facts.get(c, "")) for c in columns)])
        if rows:
            parts.append(f"<h3>{escape(title)}</h3>" + _table(["Node", "Device", *columns], rows))
    tool_names = sorted({t for node in nodes for t in node.get("tools", {})})
    if tool_names:
        rows = [[_td(node["name"]), *(_td(node.get("tools", {}).get(t, "")) for t in tool_names)] for node in nodes]
        parts.append("<h3>Tool versions</h3>" + _table(["Node", *tool_names], rows))
    for key, title in (("vcenters", "vCenter servers"), ("esxi_hosts", "ESXi hosts")):
        entries = testbed.get(key) or []
        if entries:
            columns = list(entries[0])
            parts.append(f"<h3>{title}</h3>" + _table(columns, [[_td(e.get(c, "")) for c in columns] for e in entries]))
    for title, entries in sorted((testbed.get("extra") or {}).items()):
        if entries:
            columns = sorted({c for e in entries for c in e})
            parts.append(
                f"<h3>{escape(title)}</h3>" + _table(columns, [[_td(e.get(c, "")) for c in columns] for e in entries])
            )
    if testbed.get("vcenters") and not testbed.get("extra"):
        parts.append("<p>ESXi and vCenter builds: not contributed by this run (no vSphere test reached them).</p>")
    return "".join(parts)


def metrics_section(metrics: list[dict[str, Any]]) -> str:
    if not metrics:
        return "<h2>Metrics against thresholds</h2><p>No metric was measured in this run.</p>"
    rows, classes = [], []
    for m in sorted(metrics, key=_metric_order):
        context = " ".join(f"{k}={v}" for k, v in m.get("context", {}).items())
        rows.append(
            [
                _td(m["link"]),
                _td(m["link_type"]),
                _td(m["metric"]),
                _td(context),
                _td(f"{m['value']:.4g}", "num"),
                _td(m["unit"]),
                _td(f"{m['comparison']} {m['threshold']:.4g}", "num"),
                _td(f"{m['margin']:+.1%}", "num margin"),
                _td("pass" if m["passed"] else "FAIL", "verdict"),
                _td(m.get("threshold_source", "")),
            ]
        )
        classes.append("pass" if m["passed"] else "fail")
    failed = sum(1 for m in metrics if not m["passed"])
    return (
        f"<h2>Metrics against thresholds</h2><p>{len(metrics)} measured, {failed} outside their threshold."
        " Margin: how far inside (+) or outside (-) the bound, as a fraction of the threshold.</p>"
        + _table(
            ["Link", "Type", "Metric", "Context", "Value", "Unit", "Threshold", "Margin", "Verdict", "Source"],
            rows,
            classes,
        )
    )


FABRIC_ERRORS = "fabric_errors"


def fabric_errors_section(metrics: list[dict[str, Any]]) -> str:
    """Per row that read a port's error counters: what it measured beside which counters rose.

    Every error counter is a ``fabric_errors`` metric (most stay at 0); this table puts a row's
    throughput next to the few that rose, so a fast row on a fabric that retried is seen as such.
    """
    by_test: dict[str, list[dict[str, Any]]] = {}
    for m in metrics:
        by_test.setdefault(str(m.get("test", "")), []).append(m)
    rows, classes = [], []
    for test, measured in sorted(by_test.items()):
        counters = [m for m in measured if m["metric"] == FABRIC_ERRORS]
        if not counters:
            continue
        risen = [m for m in counters if m["value"] > 0]
        shown = [m for m in measured if m["metric"] != FABRIC_ERRORS]
        passed = all(m["passed"] for m in counters)
        rows.append(
            [
                _td(counters[0]["link"]),
                _td(test.rpartition("::")[2] or test),
                _td(", ".join(f"{m['metric']} {m['value']:.4g} {m['unit']}" for m in shown) or "-"),
                _td(len(counters), "num"),
                _td(
                    "; ".join(
                        f"{m['context'].get('port', '?')} {m['context'].get('counter', '?')} +{m['value']:.0f}"
                        f" ({m['comparison']} {m['threshold']:.4g})"
                        for m in risen
                    )
                    or "none"
                ),
                _td("pass" if passed else "FAIL", "verdict"),
            ]
        )
        classes.append("pass" if passed else "fail")
    if not rows:
        return ""
    return (
        "<h2>Fabric errors beside throughput</h2><p>Error counters of the ports each row crossed, read before"
        " and after it (FC: fc_host statistics; RDMA: hw_counters and counters).</p>"
        + _table(["Link", "Row", "Measured", "Counters read", "Rose", "Verdict"], rows, classes)
    )


def _metric_order(m: dict[str, Any]) -> tuple[Any, ...]:
    # sizes in numeric order (4k before 64k before 1m), other context as text
    context = tuple((k, size_value(v) or 0.0, str(v)) for k, v in sorted(m.get("context", {}).items()))
    return (m["link_type"], m["link"], m["metric"], context)


def plots_section(metrics: list[dict[str, Any]]) -> str:
    charts = charts_for(metrics)
    if not charts:
        return ""
    return '<h2>Plots</h2><div class="charts">' + "".join(c.svg for c in charts) + "</div>"


def history_section(rows: list[MetricDelta] | None, previous_id: str | None, baseline_id: str | None) -> str:
    if rows is None:
        return "<h2>History</h2><p>No earlier run of this topology in the reports directory.</p>"
    header = ["Metric", "Unit", "Current", "Previous", "Change"]
    if baseline_id:
        header += ["Baseline", "Change"]
    header += ["Allowed", "Status"]
    body = []
    for row in rows:
        cells = [_td(row.key), _td(row.unit), _td(_num(row.current), "num"), _td(_num(row.previous), "num")]
        cells.append(_td(_pct(row.change(row.previous)), "num"))
        if baseline_id:
            cells += [_td(_num(row.baseline), "num"), _td(_pct(row.change(row.baseline)), "num")]
        cells += [_td(f"±{row.allowed:.0%}", "num"), _td(row.status, row.status)]
        body.append(cells)
    regressed = sum(1 for r in rows if r.status == "REGRESSED")
    against = f"previous run {previous_id}" + (f" and baseline {baseline_id}" if baseline_id else "")
    return (
        f"<h2>History</h2><p>Compared with the {escape(against)}: {regressed} metric(s) regressed"
        " beyond their allowed deviation.</p>" + _table(header, body)
    )


_OUTCOME_CLASS = {"failed": "FAIL", "error": "ERROR", "skipped": "SKIPPED", "passed": "PASS"}


def problems_section(tests: list[dict[str, Any]]) -> str:
    rows = [
        [_td(t["outcome"].upper(), _OUTCOME_CLASS[t["outcome"]]), _td(t["nodeid"]), _td(t.get("reason", ""))]
        for t in tests
        if t["outcome"] in ("failed", "error", "skipped")
    ]
    if not rows:
        return "<h2>Failures, errors and skips</h2><p>None: every test ran and passed.</p>"
    return (
        "<h2>Failures, errors and skips</h2><p>Fail: the device under test missed. Error: the lab broke"
        " before the test could judge. Skip: the test does not apply to this topology.</p>"
        + _table(["Outcome", "Test", "Reason"], rows)
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1%}"


def render_sections(
    results: Results,
    history: list[MetricDelta] | None = None,
    previous_id: str | None = None,
    baseline_id: str | None = None,
) -> str:
    """All document sections as one HTML fragment."""
    return (
        STYLE
        + '<div class="fq">'
        + verdict_section(results)
        + conformance_section(results)
        + inventory_section(results.get("testbed"))
        + metrics_section(results["metrics"])
        + fabric_errors_section(results["metrics"])
        + plots_section(results["metrics"])
        + history_section(history, previous_id, baseline_id)
        + problems_section(results["tests"])
        + "</div>"
    )
