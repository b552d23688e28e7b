"""Which word a row gets: skip, error or fail, also when a formal run or a lost node bends the rules.

Two funnels, both registered by fabqual's plugin:

- **Strict runs** (``--strict``): every skip, however it was raised (the
  plugin's fixtures, ``pytest.skip`` in a test body or a fixture), becomes an
  error: a formal qualification may not pass with a row that did not run. The
  report keeps the skip reason after ``strict run: not applicable here:``.
- **Lost nodes**: when a row fails and a node it uses no longer answers, the
  row fails with the node's last console lines (the device under test may
  have crashed it), the node is marked lost for the session, and every later
  row that needs it is an error ("lab broken") at its setup instead of one
  more failure. The row that lost it carries a ``fabqual_lost_node`` property,
  so the link type's verdict reads ERROR, not FAIL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fabqual.errors import LabError
from fabqual.lab import vm
from fabqual.links.base import MissingLink
from fabqual.plugin.keys import RUN
from fabqual.plugin.run import QualificationRun
from fabqual.results.run import LOST_NODE_PROPERTY

STRICT_PREFIX = "strict run: not applicable here: "
CONSOLE_LINES = 25


def row_nodes(item: pytest.Item) -> list[str]:
    """The nodes a row's link uses (none for a row without a link)."""
    callspec = getattr(item, "callspec", None)
    link = callspec.params.get("link") if callspec else None
    if link is None or isinstance(link, MissingLink):
        return []
    return sorted({end.node for end in link.endpoints.values()})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A row that needs a node lost earlier in the session is an error: the lab is broken."""
    run: QualificationRun = item.config.stash[RUN]
    lost = [(node, run.lost[node]) for node in row_nodes(item) if node in run.lost]
    if lost:
        text = "; ".join(f"node {node} {why}" for node, why in lost)
        raise LabError(f"lab broken, not run: {text}")


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: also sees the kernel-log gate failing on a dead node
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A failed row whose node stopped answering fails with that node's console, and marks it lost."""
    run: QualificationRun = item.config.stash[RUN]
    # Only a node that answered can be lost (one that never did is a lab error of its own).
    answering = [node for node in row_nodes(item) if node in run.answered or run.unreachable(node) is None]
    try:
        return (yield)
    except (Exception, pytest.fail.Exception) as error:
        gone = {node: why for node in answering if node not in run.lost if (why := run.unreachable(node))}
        if not gone:
            raise
        parts = [f"{type(error).__name__}: {str(error).strip()}"]
        for node, why in gone.items():
            run.lost[node] = f"was lost during {item.nodeid} ({why})"
            item.user_properties.append((LOST_NODE_PROPERTY, node))
            parts.append(f"node {node} stopped answering during this row: {why}")
            parts.append(console_tail(run, node))
        pytest.fail("\n".join(parts), pytrace=False)


def console_tail(run: QualificationRun, node: str) -> str:
    """The node's last console lines, from the file the topology names (its kernel's last words)."""
    path = run.topology.node(node).console_log
    if path is None:
        return f"{node}: no console_log in the topology; its last kernel lines cannot be had"
    lines = vm.console_tail(Path(path), CONSOLE_LINES).replace("\n", "\n    ")
    return f"{node}: last console lines ({path}):\n    {lines}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In a strict run a skip is an error, whichever phase or code raised it."""
    report: pytest.TestReport = yield
    run: QualificationRun = item.config.stash[RUN]
    if run.strict and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = f"{STRICT_PREFIX}{reason}"
        # A failure outside the call phase is what pytest, JUnit and pytest-html call an error.
        if report.when == "call":
            report.when = "setup"
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)
