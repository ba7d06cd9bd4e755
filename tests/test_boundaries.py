"""Package boundaries: protocol imports no program; the terminal and the wallet import nothing
of the gateway, the gateway nothing of the terminal or the wallet, and the terminal nothing of
the wallet (programs talk over the wire only), and none of them imports tapstack (the umbrella that
drives them); inside the gateway, the core (gateway/core/)
imports only protocol, the store, the standard library and cryptography (never Flask, never
gateway.http), and the store nothing of core or http. Each package's README says what its
room is for and what it may import, and lists its modules, nothing more. (SQL only under
gateway/store/: tests/gateway/test_sql_only_in_store.py.)"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it; `from a import b` counts as a.b too
    (b may be a module), so `from gateway import http` is seen as gateway.http."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def within(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


FORBIDDEN = {  # package -> the packages it never imports
    "protocol": {"gateway", "terminal", "wallet", "tapstack"},
    "terminal": {"gateway", "wallet", "tapstack"},
    "wallet": {"gateway", "terminal", "tapstack"},
    "gateway": {"terminal", "wallet", "tapstack"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_what_it_must_not(package):
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[package])
                 for p in sorted((ROOT / package).rglob("*.py"))}
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_rule_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from gateway.core import taps\n    import terminal.run\n")
    assert imported_packages(module) == {"gateway", "terminal"}


# gateway/core is the functional core; gateway/http the web shell around it; gateway/store the database.
CORE_MAY_IMPORT = ("gateway.core", "gateway.store", "protocol", "cryptography")
STORE_NEVER_IMPORTS = ("gateway.core", "gateway.http")


def test_the_core_imports_only_protocol_the_store_the_standard_library_and_cryptography():
    offenders = {}
    for path in sorted((ROOT / "gateway" / "core").rglob("*.py")):
        outside = {name for name in imported_modules(path)
                   if name.split(".")[0] not in sys.stdlib_module_names and not within(name, CORE_MAY_IMPORT)}
        if outside:
            offenders[str(path.relative_to(ROOT))] = sorted(outside)
    assert offenders == {}


def test_the_store_imports_nothing_of_the_core_or_the_http_shell():
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in imported_modules(p) if within(n, STORE_NEVER_IMPORTS))
                 for p in sorted((ROOT / "gateway" / "store").rglob("*.py"))}
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_core_rule_sees_flask_the_http_shell_and_a_package_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import flask\ndef f():\n    from gateway import http\n    from gateway.core import ledger\n")
    names = imported_modules(module)
    assert {n for n in names if not within(n, CORE_MAY_IMPORT)} == {"flask", "gateway", "gateway.http"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_readme_says_what_its_package_may_import(package):
    readme = (ROOT / package / "README.md").read_text(encoding="utf-8")
    assert "May import:" in readme


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


# The demo runs the terminals it needs as processes, through their own commands (`tapstack
# terminal till`, and `tapstack terminal validator` on the day's simulated clock), and reads
# them as an operator would: it imports no terminal module.
def test_the_demo_imports_no_terminal_module():
    offenders = {str(p.relative_to(ROOT)) for p in sorted((ROOT / "tapstack" / "demo").rglob("*.py"))
                 if "terminal" in imported_packages(p)}
    assert offenders == set()
