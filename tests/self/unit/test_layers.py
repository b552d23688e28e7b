"""The package's layers, read from its source: which module may import which.

Every ``import`` in ``src/fabqual`` is read with :mod:`ast` (also imports inside
functions and under ``if TYPE_CHECKING:``: a type-only import is still knowledge
of a higher layer). A violation names the file, the line, the import and the
rule it breaks, so the fix is obvious from the message alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import fabqual

PACKAGE = Path(fabqual.__file__).parent
SOURCE = PACKAGE.parent


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    module: str  # the importing module, dotted
    line: int
    name: str  # the imported module, dotted (``from a import b`` reads as ``a``)

    def where(self) -> str:
        return (
            f"{self.path.relative_to(self.path.parents[len(self.module.split('.'))])}:{self.line}: imports {self.name}"
        )


@dataclass(frozen=True)
class Rule:
    """Modules under ``importer`` never import a module under one of ``forbidden``."""

    text: str
    importer: str
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()  # importing modules the rule does not cover

    def broken_by(self, found: Import) -> bool:
        if not _under(found.module, self.importer) or any(_under(found.module, e) for e in self.exempt):
            return False
        return any(_under(found.name, f) for f in self.forbidden)


def _under(module: str, prefix: str) -> bool:
    return prefix == "*" or module == prefix or module.startswith(prefix + ".")


RULES = (
    Rule("drivers never import links (links are made of drivers)", "fabqual.drivers", ("fabqual.links",)),
    Rule(
        "tools never import links (a tool runs on a node, whatever link it crosses)",
        "fabqual.tools",
        ("fabqual.links",),
    ),
    Rule(
        "handles never import links or drivers (the records tests get sit below the drivers that build them)",
        "fabqual.handles",
        ("fabqual.links", "fabqual.drivers"),
    ),
    Rule(
        "executors import only the topology below them",
        "fabqual.executors",
        ("fabqual.drivers", "fabqual.links", "fabqual.tools", "fabqual.lab", "fabqual.plugin", "fabqual.report"),
    ),
    Rule(
        "topology imports nothing above it (records and their loader stand alone)",
        "fabqual.topology",
        tuple(
            f"fabqual.{name}"
            for name in ("executors", "drivers", "links", "tools", "lab", "plugin", "report", "vsphere", "doctor")
        ),
    ),
    *(
        Rule(
            f"{registry.removeprefix('fabqual.')} imports no module it registers (they are imported by name, on"
            " first use)",
            registry,
            ("fabqual.drivers", "fabqual.links", "fabqual.executors", "fabqual.tools", "fabqual.plugin"),
        )
        for registry in ("fabqual.linkspec", "fabqual.targetspec", "fabqual.entry_points")
    ),
    Rule(
        "report never imports plugin (the plugin hands the report what it reads)", "fabqual.report", ("fabqual.plugin",)
    ),
    *(
        Rule(
            f"{block.removeprefix('fabqual.')} never imports links, the plugin, report, run or fleet (built of it)",
            block,
            ("fabqual.links", "fabqual.plugin", "fabqual.report", "fabqual.run", "fabqual.fleet"),
        )
        for block in ("fabqual.vsphere", "fabqual.lab", "fabqual.doctor", "fabqual.health", "fabqual.conformance")
    ),
    *(
        Rule(
            f"{lower.removeprefix('fabqual.')} never imports run or fleet (they drive it)",
            lower,
            ("fabqual.run", "fabqual.fleet"),
        )
        for lower in ("fabqual.report", "fabqual.history", "fabqual.results_db", "fabqual.results")
    ),
    # The results stack, bottom first: records, their database, history's judgment, the report.
    Rule(
        "results (the run's records) imports none of results_db, history, report (they are built on it)",
        "fabqual.results",
        ("fabqual.results_db", "fabqual.history", "fabqual.report"),
    ),
    Rule(
        "results_db never imports history or report (history reads the database; the report renders both)",
        "fabqual.results_db",
        ("fabqual.history", "fabqual.report"),
    ),
    Rule(
        "history never imports report (the report renders history's judgment)", "fabqual.history", ("fabqual.report",)
    ),
    Rule("nothing imports the command line (it sits on top)", "*", ("fabqual.cli",), exempt=("fabqual.cli",)),
    Rule("only the SSH executor imports paramiko", "*", ("paramiko",), exempt=("fabqual.executors.ssh",)),
    Rule("only the vSphere package imports pyVmomi", "*", ("pyVmomi", "pyVim"), exempt=("fabqual.vsphere",)),
)

# The IPoFC runtime runs in the lab guests (Debian's python3, no packages): stdlib and itself only.
GUEST_RUNTIME = "fabqual.ipofc"
GUEST_ALLOWED = ("fabqual.errors", "fabqual.ipofc")


# Known violations being removed, each with why it is still here. Keep this empty.
TEMPORARY: dict[tuple[str, str], str] = {}


def _module_of(path: Path, source: Path) -> str:
    parts = list(path.relative_to(source).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(package: Path = PACKAGE) -> Iterator[Import]:
    """Every import statement under ``package``, relative ones resolved to absolute names."""
    for path in sorted(package.rglob("*.py")):
        module = _module_of(path, package.parent)
        home = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(path, module, node.lineno, alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = home.split(".")
                    base = parts[: len(parts) - node.level + 1]
                    name = ".".join([*base, node.module] if node.module else base)
                else:
                    name = node.module or ""
                if node.module is None or name == "fabqual":  # `from fabqual import lab` imports fabqual.lab
                    for alias in node.names:
                        yield Import(path, module, node.lineno, f"{name}.{alias.name}")
                else:
                    yield Import(path, module, node.lineno, name)


def violations(found: list[Import]) -> list[str]:
    lines = []
    for item in found:
        if (item.module, item.name) in TEMPORARY:
            continue
        lines += [f"{item.where()}: breaks '{rule.text}'" for rule in RULES if rule.broken_by(item)]
        if _under(item.module, GUEST_RUNTIME):
            top = item.name.split(".")[0]
            stdlib = top in sys.stdlib_module_names or top == "__future__"
            if not stdlib and not any(_under(item.name, allowed) for allowed in GUEST_ALLOWED):
                lines.append(f"{item.where()}: breaks 'the guest runtime ({GUEST_RUNTIME}) imports only the stdlib'")
    return lines


def test_every_module_keeps_the_layer_rules() -> None:
    """No module of the package imports across a layer rule (each violation: file, line, import, rule)."""
    found = list(imports())
    assert len({i.module for i in found}) > 50, "the scan found too few modules: is it reading the package?"
    broken = violations(found)
    assert not broken, "layer rules broken:\n" + "\n".join(broken)


def test_temporary_exceptions_are_still_needed() -> None:
    """Each temporary exception still matches an import: a fixed one must leave the list."""
    found = {(i.module, i.name) for i in imports()}
    gone = [f"{importer} -> {imported}" for importer, imported in TEMPORARY if (importer, imported) not in found]
    assert not gone, f"fixed, remove from TEMPORARY: {gone}"


@pytest.mark.parametrize(
    ("module", "statement", "rule"),
    [
        ("drivers/example.py", "from fabqual.links.base import LinkSession", "drivers never import links"),
        ("drivers/example.py", "from ..links import base", "drivers never import links"),
        ("report/example.py", "from fabqual.plugin.keys import RUN", "report never imports plugin"),
        ("tools/example.py", "import paramiko", "only the SSH executor imports paramiko"),
        ("ipofc/example.py", "import yaml", "the guest runtime"),
        ("lab/example.py", "from fabqual import cli", "nothing imports the command line"),
        ("topology/example.py", "from fabqual.executors.base import Executor", "topology imports nothing above it"),
        ("lab/example.py", "from fabqual.links import base", "lab never imports links"),
        ("history/example.py", "import fabqual.run.nightly", "history never imports run or fleet"),
        ("results_db/example.py", "from fabqual.history.assess import Assessment", "results_db never imports history"),
        ("history/example.py", "from fabqual.report import document", "history never imports report"),
        ("results/example.py", "from fabqual.results_db.store import ResultsDB", "results (the run's records)"),
        ("targetspec.py", "from fabqual.drivers.journal import Journal", "targetspec imports no module it registers"),
    ],
)
def test_a_planted_violation_names_file_line_and_rule(tmp_path: Path, module: str, statement: str, rule: str) -> None:
    """The checker catches a planted violation (absolute, relative or ``from fabqual import``) and its
    one line names the file, the line number, the import and the rule."""
    path = tmp_path / "fabqual" / module
    path.parent.mkdir(parents=True)
    (path.parent / "__init__.py").write_text("", encoding="utf-8")
    path.write_text(f'"""A planted violation."""\n\n{statement}\n', encoding="utf-8")
    broken = violations(list(imports(tmp_path / "fabqual")))
    assert len(broken) == 1, broken
    assert f"fabqual/{module}:3: imports " in broken[0] and rule in broken[0], broken[0]


# Modules at the knot of records, registries and loader: each must import first, in a fresh interpreter
# (a cycle between them only shows when a particular one is imported before the others).
IMPORTED_FIRST = (
    "fabqual.requirement",
    "fabqual.linkspec",
    "fabqual.targetspec",
    "fabqual.topology.model",
    "fabqual.topology.load",
    "fabqual.drivers.target_kernel",
    "fabqual.report.pytest_report",
)


@pytest.mark.parametrize("module", IMPORTED_FIRST)
def test_module_imports_first_without_a_cycle(module: str) -> None:
    """Importing ``module`` before anything else of fabqual works (no partially initialized module)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, (done.stderr.strip().splitlines() or [""])[-1]
