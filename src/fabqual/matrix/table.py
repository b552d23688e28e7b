"""The interop matrix: target release x host release x link type -> verdict, from each pair's results.

Pure functions on the pair records (no pytest, no lab): :func:`cells` reads one
pair's results JSON into its cells, :func:`render_html` draws one grid per link
type with each cell's kernels, tool versions and a link to the pair's report.
"""

from __future__ import annotations

import html
from typing import Any

from fabqual.lab.releases import RELEASES
from fabqual.results.run import link_type_verdicts

SCHEMA = "fabqual-matrix/1"
TOOLS = ("nvme-cli", "fio", "perftest", "iperf3")
_COLOURS = {"PASS": "#c8e6c9", "FAIL": "#ffcdd2", "ERROR": "#ffe0b2", "SKIPPED": "#e0e0e0", "NOT RUN": "#f5f5f5"}


def cells(results: dict[str, Any], link_types: list[str]) -> list[dict[str, Any]]:
    """One cell per link type of a pair's run: verdict, outcome counts, skip/failure reasons, versions."""
    nodes = {n.get("name"): n for n in (results.get("testbed") or {}).get("nodes", [])}
    versions = {
        name: {
            "kernel": (node.get("facts") or {}).get("kernel", "unknown"),
            "tools": {t: (node.get("tools") or {}).get(t, "unknown") for t in TOOLS},
        }
        for name, node in nodes.items()
    }
    tests = results.get("tests", [])
    table = link_type_verdicts(tests, link_types)
    out = []
    for link_type in link_types:
        row = table[link_type]
        problems = [
            f"{t.get('name', t.get('nodeid', '?'))}: {t.get('reason', '')}"
            for t in tests
            if t.get("link_type") == link_type and t.get("outcome") in ("failed", "error")
        ]
        out.append(
            {
                "link_type": link_type,
                "verdict": row["verdict"],
                "counts": {k: row[k] for k in ("passed", "failed", "error", "skipped")},
                "skip_reasons": row["skip_reasons"],
                "problems": problems[:3],
                "versions": versions,
            }
        )
    return out


def lab_error_cells(link_types: list[str], reason: str) -> list[dict[str, Any]]:
    """Every cell of a pair whose lab did not come up: ERROR with the reason."""
    return [
        {"link_type": t, "verdict": "ERROR", "counts": {}, "skip_reasons": {}, "problems": [reason], "versions": {}}
        for t in link_types
    ]


def link_types_of(pairs: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for pair in pairs:
        for cell in pair.get("cells", []):
            seen.setdefault(cell["link_type"], None)
    return list(seen)


def summary_lines(matrix: dict[str, Any]) -> list[str]:
    """One line per pair: ``bookworm:trixie  fc_nvme PASS  nvmet_rdma PASS ...`` (what the CLI prints)."""
    lines = []
    for pair in matrix["pairs"]:
        verdicts = "  ".join(f"{c['link_type']} {c['verdict']}" for c in pair.get("cells", []))
        lines.append(f"{pair['pair']:<20} {pair['state']:<12} {verdicts or pair.get('error', '')}")
    return lines


def render_html(matrix: dict[str, Any]) -> str:
    """The matrix page: one grid per link type (rows: target release, columns: host release)."""
    pairs = {p["pair"]: p for p in matrix["pairs"]}
    parts = [
        "<!doctype html><meta charset=utf-8><title>fabqual release matrix</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #999;padding:4px 8px;vertical-align:top;font-size:13px}"
        "small{color:#444}</style>",
        f"<h1>Release interop matrix</h1><p>{_e(matrix.get('started', ''))} · host load {_e(matrix.get('load', ''))}"
        f" · smoke slice: {_e(', '.join(matrix.get('patterns', [])))}</p>",
    ]
    for link_type in link_types_of(matrix["pairs"]):
        parts.append(f"<h2>{_e(link_type)}</h2><table><tr><th>target \\ host</th>")
        parts += [f"<th>{_e(host)}</th>" for host in RELEASES]
        parts.append("</tr>")
        for target in RELEASES:
            parts.append(f"<tr><th>{_e(target)}</th>")
            for host in RELEASES:
                parts.append(_cell_html(pairs.get(f"{target}:{host}"), link_type))
            parts.append("</tr>")
        parts.append("</table>")
    return "".join(parts) + "\n"


def _cell_html(pair: dict[str, Any] | None, link_type: str) -> str:
    if pair is None:
        return "<td>not chosen</td>"
    cell = next((c for c in pair.get("cells", []) if c["link_type"] == link_type), None)
    if cell is None:
        return f"<td>{_e(pair['state'])}<br><small>{_e(pair.get('error', ''))}</small></td>"
    verdict = cell["verdict"]
    lines = [f"<b>{_e(verdict)}</b>"]
    for guest, info in sorted(cell.get("versions", {}).items()):
        tools = ", ".join(f"{t} {v}" for t, v in info["tools"].items())
        lines.append(f"<small>{_e(guest)}: {_e(info['kernel'])}; {_e(tools)}</small>")
    lines += [f"<small>skip: {_e(reason)}</small>" for reason in cell.get("skip_reasons", {})]
    lines += [f"<small>{_e(problem[:300])}</small>" for problem in cell.get("problems", [])]
    if pair.get("report"):
        lines.append(f'<a href="{_e(pair["report"])}">full report</a>')
    return f'<td style="background:{_COLOURS.get(verdict, "#fff")}">' + "<br>".join(lines) + "</td>"


def _e(text: object) -> str:
    return html.escape(str(text))


__all__ = ["SCHEMA", "cells", "lab_error_cells", "link_types_of", "render_html", "summary_lines"]
