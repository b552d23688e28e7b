"""The known-issues file: failures the team has already seen, and the few it has waived.

A versioned YAML file (``known-issues.yaml``)::

    schema: fabqual-known-issues/1
    version: 4                     # bump on every edit; the database keeps each version
    issues:
      - id: LAB-12
        test: "tests/acceptance/test_ipofc.py::test_iperf3_udp*"   # fnmatch on the test id
        message: "lost \\\\d+ of \\\\d+ datagrams"                     # regex searched in the reason
        intermittent: true
        tracker: https://tracker.example.com/LAB-12
        waiver:                    # only a waiver keeps a matching failure out of the verdict
          reason: firmware 10.02.09 fixes it; vendor case 0815
          by: qa-lead
          until: 2027-01-31

A failed or errored row that matches an issue is shown as *known* (with its
tracker link) but still counts; a matching row is *waived* — left out of the
verdict — only while the issue carries a waiver whose ``until`` has not passed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from fabqual.errors import FabqualError

SCHEMA = "fabqual-known-issues/1"
ENV = "FABQUAL_KNOWN_ISSUES"  # the file every run and command uses unless told otherwise
_ISSUE_KEYS = {"id", "test", "message", "intermittent", "tracker", "waiver"}
_WAIVER_KEYS = {"reason", "by", "until"}


@dataclass(frozen=True)
class Waiver:
    reason: str
    by: str
    until: date

    def active(self, today: date) -> bool:
        return today <= self.until


@dataclass(frozen=True)
class KnownIssue:
    id: str
    test: str
    message: str = ""
    intermittent: bool = False
    tracker: str = ""
    waiver: Waiver | None = None

    @property
    def label(self) -> str:
        """The id as shown next to a failure: ``LAB-12 (intermittent)``."""
        return f"{self.id} (intermittent)" if self.intermittent else self.id

    def matches(self, nodeid: str, reason: str) -> bool:
        if not fnmatch.fnmatchcase(nodeid, self.test):
            return False
        return not self.message or re.search(self.message, reason or "") is not None


@dataclass(frozen=True)
class KnownIssues:
    version: int
    issues: tuple[KnownIssue, ...]
    source: str = ""

    def match(self, nodeid: str, reason: str) -> KnownIssue | None:
        return next((issue for issue in self.issues if issue.matches(nodeid, reason)), None)


NO_KNOWN_ISSUES = KnownIssues(version=0, issues=())


def load_known_issues(path: str | Path) -> KnownIssues:
    """Read and check the file; every mistake is one line naming the file, the entry and the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FabqualError(f"known-issues file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0]
        raise FabqualError(f"known-issues file {path} is not readable YAML: {first}") from None
    return parse_known_issues(data, str(path))


def parse_known_issues(data: Any, source: str) -> KnownIssues:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise FabqualError(f"{source}: schema is {got!r}; the first line must be 'schema: {SCHEMA}'")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FabqualError(f"{source}: version: {version!r} is not a whole number >= 1 (bump it on every edit)")
    entries = data.get("issues") or []
    if not isinstance(entries, list):
        raise FabqualError(f"{source}: issues: expected a list of issues, got {type(entries).__name__}")
    issues = [_issue(entry, f"{source}: issues[{index}]") for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for issue in issues:
        if issue.id in seen:
            raise FabqualError(f"{source}: issue id {issue.id!r} appears twice; ids must be unique")
        seen.add(issue.id)
    return KnownIssues(version=version, issues=tuple(issues), source=source)


def _issue(entry: Any, where: str) -> KnownIssue:
    if not isinstance(entry, dict):
        raise FabqualError(f"{where}: expected a mapping with id, test, message, tracker; got {entry!r}")
    unknown = set(entry) - _ISSUE_KEYS
    if unknown:
        raise FabqualError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: "
            + ", ".join(sorted(_ISSUE_KEYS))
        )
    for key in ("id", "test"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise FabqualError(f"{where}: {key}: required text, got {entry.get(key)!r}")
    message = entry.get("message") or ""
    if not isinstance(message, str):
        raise FabqualError(f"{where}: message: expected a regular expression as text, got {message!r}")
    try:
        re.compile(message)
    except re.error as error:
        raise FabqualError(f"{where}: message: {message!r} is not a valid regular expression ({error})") from None
    intermittent = entry.get("intermittent", False)
    if not isinstance(intermittent, bool):
        raise FabqualError(f"{where}: intermittent: expected true or false, got {intermittent!r}")
    tracker = entry.get("tracker") or ""
    if not isinstance(tracker, str):
        raise FabqualError(f"{where}: tracker: expected a link as text, got {tracker!r}")
    waiver = _waiver(entry["waiver"], f"{where}.waiver") if entry.get("waiver") is not None else None
    return KnownIssue(
        id=entry["id"].strip(),
        test=entry["test"].strip(),
        message=message,
        intermittent=intermittent,
        tracker=tracker,
        waiver=waiver,
    )


def _waiver(entry: Any, where: str) -> Waiver:
    if not isinstance(entry, dict):
        raise FabqualError(f"{where}: expected a mapping with reason, by, until; got {entry!r}")
    unknown = set(entry) - _WAIVER_KEYS
    if unknown:
        names = ", ".join(sorted(map(str, unknown)))
        raise FabqualError(f"{where}: unknown key(s) {names}; allowed: by, reason, until")
    for key in ("reason", "by"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise FabqualError(f"{where}: {key}: a waiver needs a {key} (text); got {entry.get(key)!r}")
    until = entry.get("until")
    if isinstance(until, datetime):
        until = until.date()
    if not isinstance(until, date):
        raise FabqualError(f"{where}: until: expected a date like 2027-01-31 (waivers expire), got {until!r}")
    return Waiver(reason=entry["reason"].strip(), by=entry["by"].strip(), until=until)


def today() -> date:
    return datetime.now(UTC).date()


def waived_issue(known: KnownIssues, nodeid: str, reason: str, on: date) -> KnownIssue | None:
    """The issue whose active waiver covers this failure, if any."""
    issue = known.match(nodeid, reason)
    return issue if issue is not None and issue.waiver is not None and issue.waiver.active(on) else None


def effective_outcomes(tests: Iterable[dict[str, Any]], known: KnownIssues, on: date) -> list[dict[str, Any]]:
    """The tests with every waived failure turned into ``waived`` (so it leaves the verdict)."""
    out = []
    for test in tests:
        if test.get("outcome") in ("failed", "error") and waived_issue(
            known, str(test.get("nodeid", "")), str(test.get("reason", "")), on
        ):
            test = {**test, "outcome": "waived"}
        out.append(test)
    return out
