"""The IPoFC runtime modules run in the lab guests (Debian's Python 3.11, stdlib only)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import fabqual.ipofc

ALLOWED_PROJECT = ("fabqual.errors", "fabqual.ipofc")


def test_ipofc_imports_only_stdlib_and_itself() -> None:
    """Every module of fabqual.ipofc imports only the standard library, fabqual.errors and fabqual.ipofc."""
    package = Path(fabqual.ipofc.__file__).parent
    bad = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__" or name.startswith(ALLOWED_PROJECT):
                    continue
                if name == "fabqual":  # `from fabqual.ipofc import x` parses as module fabqual.ipofc
                    continue
                bad.append(f"{path.name}: {name}")
    assert not bad, f"non-stdlib imports in guest runtime: {bad}"
