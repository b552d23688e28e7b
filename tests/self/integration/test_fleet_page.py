"""The fleet page from the results database, checked in headless Chromium like the run report.

Two racks of nights made from a real lab run
(fixtures/outputs/results/lab-nvmet_rdma-randread-128k.json): rack-a's newest
night is halved (every fixed threshold still passes), rack-b's newest night
fails one row that the known-issues file knows. The same nights stored in
PostgreSQL give the same page.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fabqual.fleet.page import build_fleet, render_fleet
from fabqual.results.known_issues import SCHEMA
from fabqual.results_db import ResultsDB
from fabqual.testing.nights import night
from fabqual.testing.postgres import postgres_bin, throwaway_cluster
from tests.self.integration.test_report import open_in_chromium, visible_text

REAL = Path(__file__).parents[3] / "fixtures" / "outputs" / "results" / "lab-nvmet_rdma-randread-128k.json"
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
KNOWN = f"""schema: {SCHEMA}
version: 1
issues:
  - id: LAB-9
    test: "*qd=1]"
    intermittent: true
    tracker: https://tracker.example.com/LAB-9
"""


def fill(db: ResultsDB) -> None:
    template: dict[str, Any] = json.loads(REAL.read_text())
    for index in range(8):
        when = T0 + timedelta(days=index)
        db.store(night(template, index, when, rack="rack-a", factor=0.5 if index == 7 else 1.0))
        db.store(night(template, 100 + index, when, rack="rack-b", factor=0.02 if index == 7 else 1.0))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fleet")
    with ResultsDB.open(base / "results.db") as db:
        fill(db)
    (base / "known-issues.yaml").write_text(KNOWN)
    out = base / "fleet.html"
    command = [sys.executable, "-m", "fabqual.cli", "fleet", "--results-db", f"sqlite:///{base / 'results.db'}"]
    done = subprocess.run(
        [*command, "-o", str(out), "--known-issues", str(base / "known-issues.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "2 rack(s), 1 link type(s)" in done.stdout and "12 metric(s) regressed" in done.stdout
    return out


def test_fleet_page_renders_in_chromium_with_racks_verdicts_and_trends(page: Path, tmp_path: Path) -> None:
    """Chromium shows the rack x link type matrix, 6 trend plots per rack and logs no console error."""
    dom, console = open_in_chromium(page, tmp_path, "--dump-dom")
    assert console == [], console
    text = visible_text(dom)
    assert "Racks x link types" in text and "nvmet_rdma" in text
    matrix = dom[dom.index('id="fleet-matrix"') :].split("</table>")[0]
    assert re.search(r"<th>rack-a</th>\s*<td class=\"pass\"", matrix)
    assert re.search(r"<th>rack-b</th>\s*<td class=\"fail\"", matrix)
    assert "6 regression(s)" in matrix
    assert dom.count('class="fleet-trend"') == 12
    shot = tmp_path / "fleet.png"
    open_in_chromium(page, tmp_path, "--window-size=1300,1800", f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000  # something was drawn


def test_halved_night_is_ringed_and_the_known_failure_is_marked(page: Path) -> None:
    """rack-a: six rings on the newest points, band drawn, thresholds passed; rack-b: LAB-9 with its link."""
    html = page.read_text()
    rack_a = html[html.index('id="rack-rack-a"') : html.index('id="rack-rack-b"')]
    rack_b = html[html.index('id="rack-rack-b"') :]
    assert rack_a.count('class="regression"') == 6
    assert rack_a.count('class="band"') == 6 and "THRESHOLD FAILED" not in rack_a
    assert "Failures in the newest run" not in rack_a
    assert "known issue LAB-9 (intermittent)" in rack_b and 'href="https://tracker.example.com/LAB-9"' in rack_b
    assert 'class="known"' in rack_b and "THRESHOLD FAILED" in rack_b


def test_a_later_page_without_the_file_uses_the_known_issues_stored_in_the_database(page: Path) -> None:
    """The first page stored version 1 of the file; a page made without --known-issues still marks LAB-9."""
    again = page.parent / "fleet-again.html"
    command = [sys.executable, "-m", "fabqual.cli", "fleet", "--results-db", str(page.parent / "results.db")]
    done = subprocess.run([*command, "-o", str(again)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "known issue LAB-9" in again.read_text()


def test_postgresql_holds_the_same_fleet_as_sqlite(tmp_path: Path) -> None:
    """The same nights stored in a throwaway PostgreSQL cluster give the same page as in SQLite."""
    if postgres_bin() is None:
        pytest.skip("Debian's postgresql is not installed (scripts/setup.sh installs it)")
    pages = []
    with throwaway_cluster() as url:
        for target in (url, f"sqlite:///{tmp_path / 'r.db'}"):
            with ResultsDB.open(target) as db:
                fill(db)
                fleet = build_fleet(db)
            pages.append(re.sub(r"Generated [^<]*UTC", "", render_fleet(fleet)))
    assert pages[0] == pages[1]
    assert pages[0].count('class="regression"') == 12


def test_fleet_of_an_empty_database_is_a_page_not_a_crash(tmp_path: Path) -> None:
    """No runs yet: the page says 0 racks; a bad --nights or an unwritable -o is one line."""
    out = tmp_path / "fleet.html"
    base = [sys.executable, "-m", "fabqual.cli", "fleet", "--results-db", str(tmp_path / "empty.db")]
    done = subprocess.run([*base, "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "0 rack(s)" in done.stdout and out.exists()
    bad = subprocess.run([*base, "--nights", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "between 1 and 1000" in bad.stderr and "Traceback" not in bad.stderr
    nowhere = subprocess.run([*base, "-o", "/proc/fabqual-nope/fleet.html"], capture_output=True, text=True)
    assert nowhere.returncode == 2 and "fleet page /proc/fabqual-nope/fleet.html cannot be written" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
