"""Regression flags from history, known issues, waivers and flaky rows.

The history is nights made from a real lab run
(fixtures/outputs/results/lab-nvmet_rdma-randread-128k.json) with ±3 % noise;
the emulated thresholds are loose, so a halved night still passes every fixed
threshold and only the history baseline can see it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fabqual.errors import FabqualError
from fabqual.history.assess import assess_run
from fabqual.history.baseline import Policy, learn, regressed
from fabqual.history.flaky import is_flaky
from fabqual.results.known_issues import SCHEMA, load_known_issues, parse_known_issues
from fabqual.results.run import link_type_verdicts
from fabqual.results_db import ResultsDB
from fabqual.testing.nights import night

REAL = Path(__file__).parents[3] / "fixtures" / "outputs" / "results" / "lab-nvmet_rdma-randread-128k.json"
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
QD1 = "tests/acceptance/test_nvme_fio.py::test_fio[tr=rdma-rw=randread-bs=128k-qd=1]"


def real_run() -> dict[str, Any]:
    return json.loads(REAL.read_text())  # type: ignore[no-any-return]


def test_baseline_is_median_and_mad_with_a_floor() -> None:
    """Median and 1.4826 x MAD of the newest window; the floor keeps a steady history from flagging wobbles."""
    base = learn([100, 102, 98, 101, 99, 500], Policy(window=5, sigmas=3, floor=0.1))
    assert base is not None and base.median == 100 and base.samples == 5
    assert base.spread == pytest.approx(1.4826) and base.allowed == pytest.approx(10.0)  # floor wins
    assert regressed(89, ">=", base) and not regressed(91, ">=", base) and not regressed(150, ">=", base)
    assert regressed(111, "<=", base) and not regressed(50, "<=", base)
    assert learn([1.0, 2.0]) is None and not regressed(0.0, ">=", None)


@pytest.mark.parametrize(
    ("outcomes", "flaky"),
    [
        (["passed", "failed", "passed"], True),
        (["failed", "skipped", "passed", "failed"], True),
        (["failed", "passed", "passed", "passed"], False),  # a new break
        (["failed", "failed", "failed"], False),  # a steady break
        (["passed", "skipped", "passed"], False),
    ],
)
def test_flaky_means_the_history_alternates(outcomes: list[str], flaky: bool) -> None:
    """Two or more pass/not-pass switches among decisive outcomes mark a row flaky."""
    assert is_flaky(outcomes) is flaky


KNOWN = f"""
schema: {SCHEMA}
version: 3
issues:
  - id: LAB-7
    test: "tests/acceptance/test_nvme_fio.py::test_fio[[]tr=rdma-*qd=1]"
    message: "missed its threshold"
    intermittent: true
    tracker: https://tracker.example.com/LAB-7
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema: nope\nversion: 1\nissues: []", "the first line must be 'schema: fabqual-known-issues/1'"),
        (f"schema: {SCHEMA}\nversion: 0\nissues: []", "version: 0 is not a whole number >= 1"),
        (f"schema: {SCHEMA}\nversion: 1\nissues: [{{id: A}}]", r"issues\[0\]: test: required text"),
        (f"schema: {SCHEMA}\nversion: 1\nissues: [{{id: A, test: x, message: '('}}]", "not a valid regular"),
        (f"schema: {SCHEMA}\nversion: 1\nissues: [{{id: A, test: x, tracker: 5}}]", "tracker: expected a link"),
        (f"schema: {SCHEMA}\nversion: 1\nissues: [{{id: A, test: x, colour: red}}]", "unknown key.*colour"),
        (
            f"schema: {SCHEMA}\nversion: 1\nissues: [{{id: A, test: x, waiver: {{reason: r, by: b}}}}]",
            "until: expected a date",
        ),
        (f"schema: {SCHEMA}\nversion: 1\nissues: [{{id: A, test: x}}, {{id: A, test: y}}]", "appears twice"),
    ],
)
def test_a_bad_known_issues_file_is_one_line_naming_entry_and_key(text: str, message: str, tmp_path: Path) -> None:
    """Every mistake in the file is a FabqualError naming the file, the entry and the key."""
    path = tmp_path / "known-issues.yaml"
    path.write_text(text)
    with pytest.raises(FabqualError, match=message) as caught:
        load_known_issues(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture()
def history_db(tmp_path: Path) -> ResultsDB:
    """Six nights at the real run's level, each a day apart."""
    db = ResultsDB.open(tmp_path / "results.db")
    for index in range(6):
        db.store(night(real_run(), index, T0 + timedelta(days=index)))
    return db


def test_a_halved_night_is_flagged_while_every_fixed_threshold_still_passes(history_db: ResultsDB) -> None:
    """Half the bandwidth and IOPS, twice the latency: all six metrics regress, none fails a threshold."""
    halved = night(real_run(), 6, T0 + timedelta(days=6), factor=0.5)
    assert halved["verdict"] == "PASS" and all(m["passed"] for m in halved["metrics"])
    assessment = assess_run(history_db, halved)
    assert len(assessment.regressions) == 6
    assert all(m.passed and m.baseline is not None and m.baseline.samples == 6 for m in assessment.metrics)
    assert assessment.verdict == "PASS"  # a regression flag is not a threshold failure


def test_an_ordinary_night_is_not_flagged_and_history_before_the_run_only_counts(history_db: ResultsDB) -> None:
    """A night within the noise has no flag; assessing an early night sees only the nights before it."""
    assert assess_run(history_db, night(real_run(), 6, T0 + timedelta(days=6))).regressions == []
    early = assess_run(history_db, night(real_run(), 0, T0 + timedelta(days=2)))
    assert {m.baseline.samples for m in early.metrics if m.baseline} == set()  # 2 earlier nights < 3 samples


def test_an_upgrade_starts_a_new_baseline(history_db: ResultsDB) -> None:
    """Different kernel on a node: no baseline from the old versions, so a change is not a regression."""
    upgraded = night(real_run(), 6, T0 + timedelta(days=6), factor=0.5)
    upgraded["testbed"]["nodes"][0]["facts"]["kernel"] = "6.12.0-1-amd64"
    assert assess_run(history_db, upgraded).regressions == []


def test_known_issue_marks_a_failure_and_only_a_waiver_takes_it_out_of_the_verdict(history_db: ResultsDB) -> None:
    """A matching failure is known but still FAILs the run; the same issue with an active waiver makes it PASS."""
    broken = night(real_run(), 6, T0 + timedelta(days=6), factor=0.01)
    assert broken["verdict"] == "FAIL"
    known = parse_known_issues(__import__("yaml").safe_load(KNOWN), "known-issues.yaml")
    marked = assess_run(history_db, broken, known=known, on=date(2026, 12, 1))
    row = next(r for r in marked.rows if r.nodeid == QD1)
    assert row.known is not None and row.known.id == "LAB-7" and not row.waived
    assert marked.verdict == "FAIL"
    waived_text = KNOWN + "    waiver: {reason: vendor case 0815, by: qa-lead, until: 2026-12-31}\n"
    waived = parse_known_issues(__import__("yaml").safe_load(waived_text), "known-issues.yaml")
    qd32_fails = any(r.outcome == "failed" and r.nodeid != QD1 for r in marked.rows)
    result = assess_run(history_db, broken, known=waived, on=date(2026, 12, 1))
    assert next(r for r in result.rows if r.nodeid == QD1).waived
    assert result.verdict == ("FAIL" if qd32_fails else "PASS")
    expired = assess_run(history_db, broken, known=waived, on=date(2027, 1, 1))
    assert expired.verdict == "FAIL"  # an expired waiver keeps nothing out


def test_a_row_whose_history_alternates_is_marked_flaky(tmp_path: Path) -> None:
    """pass, fail, pass, fail in the database: the next failure of that row is marked flaky."""
    db = ResultsDB.open(tmp_path / "results.db")
    for index in range(4):
        db.store(night(real_run(), index, T0 + timedelta(days=index), factor=1.0 if index % 2 == 0 else 0.01))
    latest = night(real_run(), 4, T0 + timedelta(days=4), factor=0.01)
    marks = {r.nodeid: r for r in assess_run(db, latest).rows}
    assert marks[QD1].outcome == "failed" and marks[QD1].flaky


def test_compare_with_results_db_flags_the_halved_run_and_exits_1(history_db: ResultsDB, tmp_path: Path) -> None:
    """`fabqual compare A B --results-db URL` prints the history table, names the regressions and exits 1."""
    before = tmp_path / "before.json"
    before.write_text(json.dumps(night(real_run(), 5, T0 + timedelta(days=5))))
    halved = tmp_path / "halved.json"
    halved.write_text(json.dumps(night(real_run(), 6, T0 + timedelta(days=6), factor=0.5)))
    command = [sys.executable, "-m", "fabqual.cli", "compare", str(before), str(halved)]
    url = history_db.url.render_as_string()
    done = subprocess.run([*command, "--results-db", url, "--max-deviation", "1.5"], capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "6 metric(s) regressed against history" in done.stdout
    assert done.stdout.count("REGRESSION") == 6 and "FAILED" not in done.stdout
    plain = subprocess.run([*command, "--max-deviation", "1.5"], capture_output=True, text=True)
    assert plain.returncode == 0  # run against run with a loose deviation: only history sees it


def test_nightly_exit_code_leaves_out_only_waived_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A known failure still exits 1; with an active waiver in $FABQUAL_KNOWN_ISSUES the same run exits 0."""
    from fabqual.run.nightly import exit_code

    broken = night(real_run(), 6, T0, factor=0.01)
    for test in broken["tests"]:  # only the QD1 row fails
        if test["nodeid"] != QD1:
            test.update(outcome="passed", reason="")
    broken["verdicts"] = link_type_verdicts(broken["tests"])
    results = tmp_path / "results.json"
    results.write_text(json.dumps(broken))
    known = tmp_path / "known-issues.yaml"
    known.write_text(KNOWN)
    monkeypatch.setenv("FABQUAL_KNOWN_ISSUES", str(known))
    assert exit_code(1, results)[0] == 1
    known.write_text(KNOWN + "    waiver: {reason: vendor case 0815, by: qa-lead, until: 2999-12-31}\n")
    code, reason = exit_code(1, results)
    assert code == 0 and "1 of them waived" in reason
    known.write_text("schema: nope")
    code, reason = exit_code(1, results)
    assert code == 2 and "schema" in reason
