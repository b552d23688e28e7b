"""Every run's results in one database: SQLite by default, PostgreSQL for a fleet.

``ResultsDB.open(url)`` connects and migrates; ``store(results)`` keeps one run.
The history queries behind regression flags and the fleet page are in
:mod:`fabqual.results_db.history`.
"""

from fabqual.results_db.store import ResultsDB, Stored
from fabqual.results_db.url import DEFAULT_DB, ENV, database_url

__all__ = ["DEFAULT_DB", "ENV", "ResultsDB", "Stored", "database_url"]
