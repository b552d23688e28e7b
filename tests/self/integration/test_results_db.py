"""The results database on SQLite and on a throwaway PostgreSQL cluster: store, re-store, migrate, refuse.

Runs are a real results file from the emulated lab
(fixtures/outputs/results/lab-nvmet_rdma-randread-128k.json, origin beside it)
and nights made from it by :mod:`fabqual.testing.nights`. PostgreSQL is
Debian's server started by the test (initdb + pg_ctl in a temp dir).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from fabqual.errors import FabqualError
from fabqual.results_db import ResultsDB, database_url
from fabqual.results_db.schema import inventory, metadata, metrics, racks, rows, run_links, runs
from fabqual.testing.nights import night
from fabqual.testing.postgres import postgres_bin, throwaway_cluster

REAL = Path(__file__).parents[3] / "fixtures" / "outputs" / "results" / "lab-nvmet_rdma-randread-128k.json"
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def real_run() -> dict[str, Any]:
    return json.loads(REAL.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if postgres_bin() is None:
        pytest.skip("Debian's postgresql is not installed (scripts/setup.sh installs it)")
    with throwaway_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultsDB]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'results.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with ResultsDB.open(url) as opened:
        yield opened
        if request.param == "postgresql":  # one cluster per module: leave it empty for the next test
            metadata.drop_all(opened.engine)
            with opened.engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")


def count(db: ResultsDB, table: Any) -> int:
    with db.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_real_run_is_stored_with_rows_metrics_inventory_and_verdicts(db: ResultsDB) -> None:
    """Every part of the results file lands in its table, with the rack, versions and topology hash."""
    stored = db.store(real_run(), source=str(REAL))
    assert stored.new and stored.run_key == "20261204T161500Z-25893"
    assert (count(db, runs), count(db, rows), count(db, metrics)) == (1, 2, 6)
    assert count(db, inventory) > 20  # kernel, tools and devices of both guests
    with db.connect() as connection:
        run = connection.execute(select(runs)).one()
        rack = connection.execute(select(racks)).one()
        links = dict(connection.execute(select(run_links.c.link_type, run_links.c.verdict)).all())
        kernel = connection.execute(
            select(inventory.c.value).where(inventory.c.node == "ini", inventory.c.item == "kernel")
        ).scalar_one()
        bw = connection.execute(
            select(metrics.c.value, metrics.c.unit, metrics.c.threshold).where(
                metrics.c.key == "roce0/bw_mbps[bs=128k,qd=32,rw=randread]"
            )
        ).one()
    assert rack.name == "emulated-lab" and run.verdict == "PASS" and run.profile == "emulated"
    assert len(run.versions_hash) == 64
    assert links["nvmet_rdma"] == "PASS" and links["fc_nvme"] == "NOT RUN"
    assert kernel == "6.1.0-57-amd64"
    assert bw.unit == "MB/s" and bw.value == pytest.approx(22.646759) and bw.threshold == 1.0


def test_storing_the_same_run_again_adds_nothing(db: ResultsDB) -> None:
    """The second import finds the run id and stores nothing (nightly re-imports are safe)."""
    first, second = db.store(real_run()), db.store(real_run())
    assert first.new and not second.new and first.run_id == second.run_id
    assert (count(db, runs), count(db, metrics)) == (1, 6)


def test_a_run_that_breaks_half_way_leaves_nothing_behind(db: ResultsDB) -> None:
    """One transaction per run: a metric that cannot be stored rolls back the run, its rows and racks."""
    broken = night(real_run(), 1, T0)
    broken["metrics"][3]["value"] = "not a number"
    with pytest.raises(ValueError):
        db.store(broken)
    assert (count(db, runs), count(db, rows), count(db, metrics), count(db, racks)) == (0, 0, 0, 0)
    assert db.store(night(real_run(), 1, T0)).new  # and the run can be stored once it is whole


def test_the_migrations_create_exactly_the_declared_schema(db: ResultsDB) -> None:
    """Alembic's head revision and schema.py agree (no drift between the two)."""
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert db.revision() == "0001"


def test_opening_an_up_to_date_database_again_changes_nothing(tmp_path: Path) -> None:
    """The second open of a migrated file finds its revision current and keeps the stored runs."""
    path = tmp_path / "results.db"
    with ResultsDB.open(path) as db:
        db.store(real_run())
    with ResultsDB.open(f"sqlite:///{path}") as db:
        assert db.revision() == "0001" and count(db, runs) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mysql://u@h/db", "'mysql' is not supported"),
        ("postgresql://u@h", "names no database"),
        ("sqlite://", "name a SQLite file"),
        ("sqlite:///:memory:", "name a SQLite file"),
        ("  ", "is empty"),
        ("post gres://x", "is not a database URL"),
    ],
)
def test_bad_database_urls_are_refused_in_one_line(text: str, message: str) -> None:
    """Every wrong --results-db names what is wrong and what to write."""
    with pytest.raises(FabqualError, match=message) as caught:
        database_url(text)
    assert "\n" not in str(caught.value)


def test_a_postgresql_server_that_is_not_there_is_one_line() -> None:
    """A refused connection is a one-line FabqualError naming the URL without its password."""
    with pytest.raises(FabqualError, match="cannot be opened") as caught:
        ResultsDB.open("postgresql://fabqual:s3cret@127.0.0.1:1/fabqual")
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_sqlite_file_where_no_directory_can_be_made_is_one_line() -> None:
    """A path under /proc cannot hold a database: one line naming it, no traceback."""
    with pytest.raises(FabqualError, match="cannot make its directory") as caught:
        ResultsDB.open("/proc/fabqual-no-such/results.db")
    assert "\n" not in str(caught.value)


def test_results_import_command_stores_files_and_reports_unreadable_ones(tmp_path: Path) -> None:
    """`fabqual results import` stores each file once, skips known runs, and exits 2 naming a bad file."""
    files = []
    for index in range(3):
        path = tmp_path / f"results-{index}.json"
        path.write_text(json.dumps(night(real_run(), index, T0 + timedelta(days=index))))
        files.append(str(path))
    bad = tmp_path / "results-bad.json"
    bad.write_text("{not json")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    command = [sys.executable, "-m", "fabqual.cli", "results", "import", "--results-db", url]
    first = subprocess.run([*command, *files], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "3 run(s) stored, 0 already there" in first.stdout
    again = subprocess.run([*command, *files, str(bad)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "0 run(s) stored, 3 already there, 1 unreadable" in again.stdout
    assert f"results file {bad} is not readable JSON" in again.stderr and "Traceback" not in again.stderr
