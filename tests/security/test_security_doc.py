"""docs/security.md names the tests that prove each item: they exist, and its figures hold."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.security.corpus import corpus
from tests.security.test_webhook_targets import INTERNAL

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "security.md").read_text()
# `tests/x/test_a.py`, `test_a.py` (in tests/security), either with ::test_name, or `::test_name`
# alone: a test of the file named last.
REFERENCE = re.compile(r"`((?:tests/[\w/]+/)?test_\w+\.py)?(?:::(\w+))?`")


def _functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def test_every_test_the_page_names_exists():
    checked, current = 0, None
    for match in REFERENCE.finditer(DOC):
        file, name = match[1], match[2]
        if not file and not name:
            continue
        if file:
            current = REPO / (file if file.startswith("tests/") else f"tests/security/{file}")
            assert current.is_file(), file
        if name:
            assert name in _functions(current), f"{current.relative_to(REPO)}::{name}"
        checked += 1
    assert checked > 30


def test_its_figures_hold():
    assert len(corpus()) > 2000
    assert len(INTERNAL) > 30
