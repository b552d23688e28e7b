"""Every qualification run stores itself in the results database and its report judges it against history.

Real pytest sessions of the fake suite of test_report.py (a topology whose
node is this machine; the suite records measurements, no link is brought up):
three ordinary runs, then one in which one metric is 30 % worse. The fourth
report's "Against history" section flags exactly that metric, which still
passes its fixed threshold; a results database that cannot be opened costs a
run one note, not its report.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.self.integration.test_report import make_workdir, results_of, run_suite, visible_text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_workdir(tmp_path_factory.mktemp("run-history"))
    for _ in range(3):
        assert run_suite(work).returncode == 1  # the fake suite misses one ipofc threshold on purpose
    return work


def test_each_run_is_stored_in_reports_results_db(workdir: Path) -> None:
    """Three sessions, three runs in reports/results.db beside their JSON, with every metric."""
    with sqlite3.connect(workdir / "reports" / "results.db") as db:
        assert db.execute("select count(*) from runs").fetchone() == (3,)
        assert db.execute("select name from racks").fetchall() == [("report-rack",)]
        per_run = db.execute("select count(*) from metrics group by run_id").fetchall()
    assert {count for (count,) in per_run} == {len(results_of(workdir)["metrics"])}


def test_a_worse_metric_is_flagged_against_history_in_the_report(workdir: Path) -> None:
    """The fourth run's report: one REGRESSION (roce0 bw at 64k), its threshold still passed."""
    result = run_suite(workdir, FQ_WORSE="1")
    assert result.returncode == 1
    text = visible_text((workdir / "reports" / "qualification.html").read_text())
    section = text[text.index("Against history (results database)") :]
    assert "6 metric(s) regressed" not in section and "1 regressed" in section
    assert section.count("REGRESSION") == 1
    assert "roce0/bw[bs=64k]" in section and "passed REGRESSION" in section


def test_an_unusable_results_db_is_a_note_not_a_broken_report(workdir: Path) -> None:
    """--results-db naming an unsupported database: the run's JSON and report are still written."""
    result = run_suite(workdir, "--results-db", "mysql://nobody@127.0.0.1/x")
    assert result.returncode == 1 and "INTERNALERROR" not in result.stdout + result.stderr
    notes = results_of(workdir).get("notes", [])
    assert any("not stored in the results database" in n and "'mysql' is not supported" in n for n in notes)
    assert "Not stored in the results database" in (workdir / "reports" / "qualification.html").read_text()
