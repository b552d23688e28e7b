"""Every run's results in one database: SQLite by default, PostgreSQL for a fleet.

``ResultsDB.open(url)`` connects and migrates; ``store(results)`` keeps one run.
The history queries behind regression flags and the fleet page are in
:mod:`fabqual.results_db.history`. SQLAlchemy and Alembic are imported when
:class:`ResultsDB` is first used, so the command line starts without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabqual.results_db.url import DEFAULT_DB, ENV, database_url

if TYPE_CHECKING:
    from fabqual.results_db.store import ResultsDB, Stored

__all__ = ["DEFAULT_DB", "ENV", "ResultsDB", "Stored", "database_url"]


def __getattr__(name: str) -> Any:
    if name in ("ResultsDB", "Stored"):
        from fabqual.results_db import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
