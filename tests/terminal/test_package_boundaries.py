"""Package boundaries: the terminal never imports the wallet or the gateway (it talks to
other programs over the wire only), and each package's README lists its modules, nothing more."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_terminal_never_imports_the_wallet():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "terminal").rglob("*.py"))
                 if "wallet" in imported_packages(p)]
    assert offenders == []


def test_the_terminal_never_imports_the_gateway():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "terminal").rglob("*.py"))
                 if "gateway" in imported_packages(p)]
    assert offenders == []


def test_protocol_imports_no_program():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "protocol").rglob("*.py"))
                 if imported_packages(p) & {"gateway", "terminal", "wallet"}]
    assert offenders == []


@pytest.mark.parametrize("package", ["terminal", "wallet", "protocol"])
def test_the_readme_lists_every_module_and_only_modules_that_exist(package):
    base = ROOT / package
    modules = {str(p.relative_to(base)) for p in base.rglob("*.py")
               if p.name != "__init__.py" and "__pycache__" not in p.parts}
    readme = (base / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`([\w/]+\.py)`", readme))
    folders = set(re.findall(r"`([\w]+)/`", readme))
    # a module is listed by its path, or by its name inside a listed folder's bullet
    unlisted = {m for m in modules if m not in listed and Path(m).name not in listed
                and not (Path(m).parent.name in folders)}
    assert unlisted == set()
    # a listed name is a module here (by path, or by name in a sub-package) or a path from the root
    gone = {m for m in listed if not (base / m).exists() and not any(base.glob(f"*/{m}"))
            and not (ROOT / m).exists()}
    assert gone == set()
