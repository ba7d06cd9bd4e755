"""SQL lives only under gateway/store/: everywhere else in gateway/ calls named functions.

A statement's text, or a call that runs one on a transaction or a driver, anywhere
else in gateway/ fails this test with the file and line to move.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
STORE = GATEWAY / "store"
SQL_TEXT = re.compile(
    r"\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|UNIQUE)"
    r"|ALTER\s+TABLE|DROP\s+(TABLE|INDEX)|ON\s+CONFLICT|SAVEPOINT|PRAGMA)\b", re.I | re.S)
RUNS_SQL = {"execute", "executemany", "executescript", "query", "one", "insert"}


def outside_store() -> list[Path]:
    return [p for p in sorted(GATEWAY.rglob("*.py")) if STORE not in p.parents]


def findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and SQL_TEXT.search(node.value)):
            found.append(f"{path.relative_to(GATEWAY.parent)}:{node.lineno}: SQL text {node.value[:60]!r}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in RUNS_SQL and _runs_on_a_transaction(node.func.value)):
            found.append(f"{path.relative_to(GATEWAY.parent)}:{node.lineno}: .{node.func.attr}( runs SQL")
    return found


def _runs_on_a_transaction(target: ast.expr) -> bool:
    """tx.query(...), conn.execute(...), self._conn.execute(...), cursor.execute(...)"""
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name.lstrip("_") in {"tx", "conn", "connection", "cursor", "cur", "db", "write_tx", "read_tx"}


def test_no_sql_outside_the_store():
    problems = [line for path in outside_store() for line in findings(path)]
    assert not problems, "SQL outside gateway/store/ (move it into a query module there):\n" + "\n".join(problems)


def test_the_check_sees_sql_where_it_is():
    assert findings(STORE / "secrets.py"), "the check must recognise the store's own SQL"
