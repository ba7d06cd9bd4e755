"""gateway/store/migrations/README.md: its table names every migration file there is, and only those."""
import re
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parents[2] / "gateway" / "store" / "migrations"


def test_the_table_lists_every_migration_file():
    listed = re.findall(r"^\| (\d{4}_[a-z0-9_]+\.sql) \|", (MIGRATIONS / "README.md").read_text(), re.M)
    assert listed == sorted(p.name for p in MIGRATIONS.glob("*.sql"))
