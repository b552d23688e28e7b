"""Product files speak for themselves: no development machine's paths, no issue numbers in
thresholds notes, and every file a thresholds note cites is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
THRESHOLDS = sorted((ROOT / "src" / "fabqual" / "data" / "thresholds").glob("*.yaml"))

# Places that only exist on the machines this suite was developed on.
MACHINE_PATHS = re.compile(r"/work/|venv-dev|/home/\w+|/root/\.cache/fabqual-\w+|DESIGN\.md")
# A file outside the repository standing in for a measurement.
OUTSIDE = re.compile(r"DESIGN\.md|research/|shared/")
ISSUE = re.compile(r"\bissues? ?#?\d+|#\d+\b", re.IGNORECASE)
CITED = re.compile(r"\b((?:docs|benchmarks/results|fixtures/outputs)/[\w./-]*[\w/])")


def _product_files() -> list[Path]:
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "src").rglob("*.yaml"), *(ROOT / "benchmarks").glob("*.py")]
    files += [*(ROOT / "benchmarks").glob("*.sh"), *(ROOT / "docs").glob("*.md"), *(ROOT / "topologies").glob("*.yaml")]
    return sorted([*files, ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "tox.ini"])


def _notes(path: Path) -> list[str]:
    """Every comment and every ``note:`` of a thresholds file."""
    text = path.read_text(encoding="utf-8")
    comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
    notes: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            notes.extend(str(v) for k, v in value.items() if k in ("note", "description"))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(yaml.safe_load(text))
    return comments + notes


def test_no_development_machine_paths_in_product_files() -> None:
    """No source, benchmark, doc or topology names a path of one development machine, or the design
    brief that lives outside the repository."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _product_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if MACHINE_PATHS.search(line)
    ]
    assert not found, "machine-specific paths:\n" + "\n".join(found)


@pytest.mark.parametrize("path", THRESHOLDS, ids=lambda p: p.name)
def test_thresholds_notes_cite_what_the_repository_holds(path: Path) -> None:
    """Thresholds notes name no issue numbers and no file outside the repository, and every
    docs/, benchmarks/results/ or fixtures/outputs/ file they cite exists."""
    notes = _notes(path)
    assert len(notes) > 20, f"{path.name}: read too few notes"
    problems = [f"issue number: {note}" for note in notes if ISSUE.search(note)]
    problems += [f"cites a file outside the repository: {note}" for note in notes if OUTSIDE.search(note)]
    cited = {match for note in notes for match in CITED.findall(note)}
    problems += [f"cites a missing file: {name}" for name in sorted(cited) if not (ROOT / name).exists()]
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
