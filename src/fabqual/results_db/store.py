"""The results database: open (and migrate) it, and store a run's results in it.

Why SQLAlchemy Core with Alembic rather than psycopg with versioned SQL: the
default store is a SQLite file and a fleet's is PostgreSQL, and one layer that
speaks both (types, upserts, executemany) keeps a single code path for both;
Alembic versions the schema for both dialects from the same revision files
(``render_as_batch`` makes table changes work on SQLite too). The ORM is not
used: runs are written in bulk and read as rows.

Every run is one transaction: a run killed half-way leaves nothing behind, and
importing the same results again finds its ``run_key`` and stores nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from fabqual.errors import FabqualError
from fabqual.results.run import Results, link_type_verdicts, metric_key
from fabqual.results_db import schema
from fabqual.results_db.inventory import inventory_rows, versions_hash
from fabqual.results_db.url import database_url, describe

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Stored:
    """What one import did: the run's key, its row id, and whether it was new."""

    run_key: str
    run_id: int
    new: bool


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone: they were stored as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


class ResultsDB:
    """One database of runs. Open with :meth:`open`; use as a context manager or call :meth:`close`."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url

    @classmethod
    def open(cls, target: str | Path | URL, *, migrate: bool = True) -> ResultsDB:
        """Connect to ``target`` (URL or SQLite path) and bring its schema to the newest revision."""
        url = target if isinstance(target, URL) else database_url(target)
        if url.get_backend_name() == "sqlite" and url.database:
            try:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise FabqualError(
                    f"results database {url.database}: cannot make its directory ({error.strerror})"
                ) from None
            engine = create_engine(url, connect_args={"timeout": 60})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        db = cls(engine, url)
        try:
            if migrate:
                db.upgrade()
            else:
                with engine.connect():
                    pass
        except SQLAlchemyError as error:
            engine.dispose()
            cause = getattr(error, "orig", None) or error
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise FabqualError(f"results database {describe(url)} cannot be opened: {first}") from None
        return db

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self) -> None:
        """Apply every migration the database lacks (a no-op when it is current)."""
        with self.engine.begin() as connection:
            config = _alembic_config(connection)
            head = ScriptDirectory.from_config(config).get_current_head()
            if MigrationContext.configure(connection).get_current_revision() != head:
                command.upgrade(config, "head")

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    def store(
        self,
        results: Results,
        *,
        source: str = "",
        rack: str | None = None,
        place: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Stored:
        """Store one run (all its rows, metrics and inventory) in one transaction; idempotent by run id."""
        run = results.get("run") or {}
        run_key = str(run.get("id") or "")
        if not run_key:
            raise FabqualError(f"results {source or ''} carry no run.id; is this a fabqual results file?")
        rack_name = rack or str(run.get("rack") or run.get("topology") or "unknown")
        with self.engine.begin() as connection:
            existing = connection.execute(select(schema.runs.c.id).where(schema.runs.c.run_key == run_key)).first()
            if existing is not None:
                return Stored(run_key, int(existing.id), False)
            rack_id = self._rack(connection, rack_name, place or run.get("place"), tags or run.get("place_tags"))
            run_id = self._run(connection, results, run_key, rack_id, source)
            self._children(connection, results, run_id)
        return Stored(run_key, run_id, True)

    def _rack(self, connection: Connection, name: str, place: str | None, tags: dict[str, str] | None) -> int:
        found = connection.execute(select(schema.racks.c.id).where(schema.racks.c.name == name)).first()
        if found is not None:
            if place or tags:
                values: dict[str, Any] = {}
                if place:
                    values["place"] = place
                if tags:
                    values["tags"] = json.dumps(tags, sort_keys=True)
                connection.execute(schema.racks.update().where(schema.racks.c.id == found.id).values(**values))
            return int(found.id)
        inserted = connection.execute(
            schema.racks.insert().values(
                name=name, place=place, tags=json.dumps(tags or {}, sort_keys=True), first_seen=datetime.now(UTC)
            )
        )
        return _new_id(inserted)

    def _run(self, connection: Connection, results: Results, run_key: str, rack_id: int, source: str) -> int:
        run = results["run"]
        topology_file = str(run.get("topology_file") or "")
        topology_hash = run.get("topology_hash")
        if not topology_hash and topology_file and Path(topology_file).is_file():
            topology_hash = hashlib.sha256(Path(topology_file).read_bytes()).hexdigest()
        started = parse_time(run.get("started")) or datetime.now(UTC)
        inserted = connection.execute(
            schema.runs.insert().values(
                run_key=run_key,
                rack_id=rack_id,
                topology=str(run.get("topology") or "unknown"),
                topology_file=topology_file,
                topology_hash=topology_hash,
                profile=str(run.get("profile") or ""),
                versions_hash=versions_hash(results.get("testbed"), str(run.get("fabqual_version", ""))),
                fabqual_version=str(run.get("fabqual_version") or ""),
                started=started,
                finished=parse_time(run.get("finished")),
                duration_s=run.get("duration_s"),
                host=str(run.get("host") or ""),
                command=str(run.get("command") or ""),
                verdict=str(results.get("verdict") or "NOT RUN"),
                strict=bool(run.get("strict", False)),
                source=source,
                imported=datetime.now(UTC),
            )
        )
        return _new_id(inserted)

    def _children(self, connection: Connection, results: Results, run_id: int) -> None:
        tests = results.get("tests") or []
        verdicts = results.get("verdicts") or link_type_verdicts(tests)
        link_rows = [
            {
                "run_id": run_id,
                "link_type": link_type,
                "verdict": str(counts.get("verdict", "NOT RUN")),
                **{o: int(counts.get(o, 0)) for o in ("passed", "failed", "error", "skipped")},
            }
            for link_type, counts in verdicts.items()
        ]
        test_rows = [
            {
                "run_id": run_id,
                "nodeid": str(t.get("nodeid", "")),
                "link": t.get("link"),
                "link_type": t.get("link_type"),
                "outcome": str(t.get("outcome", "error")),
                "reason": str(t.get("reason") or "")[:4000],
                "duration_s": float(t.get("duration_s") or 0.0),
            }
            for t in tests
        ]
        metric_rows = [
            {
                "run_id": run_id,
                "key": metric_key(m),
                "test": str(m.get("test", "")),
                "link": str(m.get("link", "")),
                "link_type": str(m.get("link_type", "")),
                "metric": str(m["metric"]),
                "context": json.dumps(m.get("context") or {}, sort_keys=True),
                "value": float(m["value"]),
                "unit": str(m.get("unit", "")),
                "comparison": str(m.get("comparison", ">=")),
                "threshold": m.get("threshold"),
                "margin": m.get("margin"),
                "passed": bool(m.get("passed", False)),
                "threshold_source": str(m.get("threshold_source", "")),
            }
            for m in results.get("metrics") or []
        ]
        inventory = [
            {"run_id": run_id, "node": node, "item": item, "value": value[:4000]}
            for node, item, value in inventory_rows(results.get("testbed"))
        ]
        for table, values in (
            (schema.run_links, link_rows),
            (schema.rows, test_rows),
            (schema.metrics, metric_rows),
            (schema.inventory, inventory),
        ):
            if values:
                connection.execute(table.insert(), values)


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise FabqualError("the results database returned no id for a new row")
    return int(key[0])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (the fleet page) never block a runner that is writing, and
    # foreign keys are enforced as on PostgreSQL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
