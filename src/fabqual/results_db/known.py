"""The known-issues file's versions kept in the database, so the fleet page knows them without the file.

Each ``(issue id, file version)`` is stored once; the newest version stored is
what :func:`latest_known_issues` gives back.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from sqlalchemy import func, select

from fabqual.results.known_issues import KnownIssue, KnownIssues, Waiver
from fabqual.results_db.schema import known_issues
from fabqual.results_db.store import ResultsDB


def store_known_issues(db: ResultsDB, known: KnownIssues) -> int:
    """Store this version of the file (if it is new); how many issues were added."""
    if not known.issues:
        return 0
    with db.engine.begin() as connection:
        stored = connection.execute(
            select(func.count()).select_from(known_issues).where(known_issues.c.file_version == known.version)
        ).scalar_one()
        if stored:
            return 0
        now = datetime.now(UTC)
        connection.execute(
            known_issues.insert(),
            [
                {
                    "issue": issue.id,
                    "file_version": known.version,
                    "test_pattern": issue.test,
                    "message_pattern": issue.message,
                    "intermittent": issue.intermittent,
                    "tracker": issue.tracker,
                    "waiver": json.dumps(
                        {"reason": issue.waiver.reason, "by": issue.waiver.by, "until": issue.waiver.until.isoformat()}
                    )
                    if issue.waiver
                    else None,
                    "loaded": now,
                }
                for issue in known.issues
            ],
        )
    return len(known.issues)


def latest_known_issues(db: ResultsDB) -> KnownIssues:
    """The newest version of the known-issues file stored, or an empty one."""
    with db.connect() as connection:
        version = connection.execute(select(func.max(known_issues.c.file_version))).scalar_one()
        if version is None:
            return KnownIssues(version=0, issues=())
        rows = connection.execute(
            select(known_issues).where(known_issues.c.file_version == version).order_by(known_issues.c.id)
        ).all()
    issues = []
    for row in rows:
        waiver = None
        if row.waiver:
            data = json.loads(row.waiver)
            waiver = Waiver(reason=data["reason"], by=data["by"], until=date.fromisoformat(data["until"]))
        issues.append(
            KnownIssue(
                id=row.issue,
                test=row.test_pattern,
                message=row.message_pattern,
                intermittent=bool(row.intermittent),
                tracker=row.tracker,
                waiver=waiver,
            )
        )
    return KnownIssues(version=int(version), issues=tuple(issues), source="results database")
