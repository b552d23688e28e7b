"""``--results-db`` values: a database URL, or a plain path meaning a SQLite file.

``sqlite:///reports/results.db`` (relative) and ``sqlite:////abs/results.db``
are SQLite files; ``postgresql://user@host:port/db`` (also
``postgresql://user@/db?host=/run/postgresql`` for a unix socket) is PostgreSQL
through psycopg 3. Anything else is refused with one line saying what to write.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from fabqual.errors import FabqualError

DEFAULT_DB = Path("reports") / "results.db"
ENV = "FABQUAL_RESULTS_DB"
EXAMPLES = "sqlite:///reports/results.db or postgresql://user@host/dbname"


def database_url(text: str | Path) -> URL:
    """The SQLAlchemy URL for ``text``; a path without a scheme is a SQLite file."""
    raw = str(text).strip()
    if not raw:
        raise FabqualError(f"--results-db is empty; give a database URL like {EXAMPLES}")
    if "://" not in raw:
        return URL.create("sqlite", database=str(Path(raw)))
    try:
        url = make_url(raw)
    except ArgumentError:
        raise FabqualError(f"--results-db {raw!r} is not a database URL; write it like {EXAMPLES}") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.drivername != "sqlite" or not url.database or url.database == ":memory:":
            raise FabqualError(f"--results-db {raw!r}: name a SQLite file, like sqlite:///reports/results.db")
        return url
    if backend == "postgresql":
        if not url.database:
            raise FabqualError(f"--results-db {url.render_as_string()!r} names no database; add /dbname at the end")
        return url.set(drivername="postgresql+psycopg")
    raise FabqualError(f"--results-db {url.render_as_string()!r}: {backend!r} is not supported; use {EXAMPLES}")


def describe(url: URL) -> str:
    """The URL as it may be printed: the password hidden."""
    return url.render_as_string(hide_password=True)
