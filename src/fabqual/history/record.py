"""Every qualification run writes itself into the results database as it ends.

The database is ``$FABQUAL_RESULTS_DB`` (a URL or path), else ``results.db``
beside the run's results file (``reports/results.db``). The run is stored, then
judged against the history before it (known issues from
``$FABQUAL_KNOWN_ISSUES``). A database that cannot be written costs the run a
note in its report, never the report itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from fabqual.errors import FabqualError
from fabqual.history.assess import Assessment, assess_run
from fabqual.results.known_issues import ENV as KNOWN_ISSUES_ENV
from fabqual.results.known_issues import NO_KNOWN_ISSUES, load_known_issues
from fabqual.results.run import Results
from fabqual.results_db.known import store_known_issues
from fabqual.results_db.store import ResultsDB
from fabqual.results_db.url import ENV, describe


def database_for(results_path: Path, given: str | None = None) -> str:
    return given or os.environ.get(ENV) or str(results_path.parent / "results.db")


def record_run(
    results: Results, results_path: Path, *, database: str | None = None, known_issues: str | None = None
) -> tuple[Assessment, str]:
    """Store the run and assess it; raises :class:`FabqualError` with one line when it cannot.

    ``database`` and ``known_issues`` are the session's ``--results-db`` and
    ``--known-issues``; without them the environment variables, then the default.
    """
    known_file = known_issues or os.environ.get(KNOWN_ISSUES_ENV)
    known = load_known_issues(known_file) if known_file else NO_KNOWN_ISSUES
    try:
        with ResultsDB.open(database_for(results_path, database)) as db:
            db.store(results, source=str(results_path.resolve()))
            store_known_issues(db, known)
            return assess_run(db, results, known=known), describe(db.url)
    except FabqualError:
        raise
    except Exception as error:  # a driver error names the database problem; keep it to one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise FabqualError(f"results database {database_for(results_path, database)}: {first}") from None
