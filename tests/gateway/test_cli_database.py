"""`--database URL` on the gateway's commands, and the one line each gives for a database
it cannot use: unknown scheme, unreachable, wrong password, not migrated, migrated by a
newer tapstack. Each exits 2 and prints no traceback."""
from __future__ import annotations

import itertools
import subprocess
import sys

import psycopg
import pytest

from tapstack.postgres import LocalPostgres

_names = itertools.count()


def gateway(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-m", "tapstack", "gateway", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "TAPSTACK_MASTER_KEY": "ab" * 32, **(env or {})})


def refused(done: subprocess.CompletedProcess, *words: str) -> str:
    """The command exited 2 with one line on stderr naming `words`, and no traceback."""
    text = done.stderr.strip()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(text.splitlines()) == 1, text
    for word in words:
        assert word in text, text
    return text


@pytest.fixture
def fresh_db(postgres):
    return postgres.create_database(f"cli_{next(_names)}")


@pytest.mark.parametrize("command", ["serve", "check", "migrate", "operator-key", "deliver-webhooks", "charge-trips"])
def test_every_command_refuses_an_unknown_scheme(command, tmp_path):
    refused(gateway(command, "--data", str(tmp_path), "--database", "mysql://root@localhost/db"),
            "unknown database URL scheme 'mysql'", "postgresql://")


def test_an_unreachable_database_is_one_line(tmp_path):
    refused(gateway("check", "--data", str(tmp_path), "--database", f"postgresql:///x?host={tmp_path}&user=postgres"),
            "x?host=")


def test_a_wrong_password_is_one_line_without_the_password(tmp_path):
    with LocalPostgres(port=_free_port()) as cluster:
        cluster.sql("CREATE ROLE app LOGIN PASSWORD 'right'")
        done = gateway("migrate", "--data", str(tmp_path),
                       "--database", f"postgresql://app:wrong@127.0.0.1:{cluster.port}/postgres")
        text = refused(done, "password authentication failed", "app:***@")
        assert "wrong" not in text
        ok = gateway("migrate", "--data", str(tmp_path),
                     "--database", f"postgresql://app:right@127.0.0.1:{cluster.port}/postgres")
        assert ok.returncode == 2 and "permission denied" in ok.stderr  # it may not create tables: said plainly


def test_serve_refuses_an_unmigrated_database_and_names_the_command(fresh_db, tmp_path):
    text = refused(gateway("serve", "--data", str(tmp_path), "--database", fresh_db, "--port", str(_free_port())),
                   "is not applied", "run: tapstack gateway migrate --database")
    assert fresh_db.split("?")[0] in text


def test_migrate_applies_then_reports_nothing_to_do(fresh_db, tmp_path):
    first = gateway("migrate", "--data", str(tmp_path), "--database", fresh_db)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_ledger.sql" in first.stdout
    again = gateway("migrate", "--data", str(tmp_path), "--database", fresh_db)
    assert again.returncode == 0 and "(0 now," in again.stdout and "applied 0" not in again.stdout
    check = gateway("check", "--data", str(tmp_path), "--database", fresh_db)
    assert check.returncode == 0 and "ok: the books balance" in check.stdout


def test_a_schema_from_a_newer_tapstack_is_refused(fresh_db, tmp_path):
    assert gateway("migrate", "--data", str(tmp_path), "--database", fresh_db).returncode == 0
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (9000, 'later', 'x', '2030-01-01T00:00:00Z')")
    refused(gateway("serve", "--data", str(tmp_path), "--database", fresh_db, "--port", str(_free_port())),
            "9000_later was applied by a newer tapstack")


def test_a_node_with_another_master_key_refuses_to_serve(fresh_db, tmp_path):
    assert gateway("migrate", "--data", str(tmp_path), "--database", fresh_db).returncode == 0
    first = gateway("operator-key", "--data", str(tmp_path), "--database", fresh_db)
    assert first.returncode == 0 and first.stdout.startswith("op_")
    refused(gateway("operator-key", "--data", str(tmp_path), "--database", fresh_db,
                    env={"TAPSTACK_MASTER_KEY": "cd" * 32}), "master key")


def test_the_environment_names_the_database(fresh_db, tmp_path):
    done = gateway("migrate", "--data", str(tmp_path), env={"TAPSTACK_DATABASE_URL": fresh_db})
    assert done.returncode == 0 and "postgresql:///" in done.stdout


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_publish_fares_puts_the_rules_in_the_database_once(fresh_db, tmp_path):
    import json

    from tapstack.demo.city import fare_rules
    assert gateway("migrate", "--data", str(tmp_path), "--database", fresh_db).returncode == 0
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(fare_rules(rules_version=3)))
    first = gateway("publish-fares", str(rules), "--data", str(tmp_path / "node-b"), "--database", fresh_db)
    assert first.returncode == 0 and "fare rules version 3 published" in first.stdout, first.stderr
    again = gateway("publish-fares", str(rules), "--data", str(tmp_path), "--database", fresh_db)
    assert again.returncode == 0 and "version 3 already published" in again.stdout
    rules.write_text(json.dumps(fare_rules(rules_version=2)))
    stale = gateway("publish-fares", str(rules), "--data", str(tmp_path), "--database", fresh_db)
    assert stale.returncode == 1 and "version 3 are published" in stale.stderr and "Traceback" not in stale.stderr
    rules.write_text("{not json")
    broken = gateway("publish-fares", str(rules), "--data", str(tmp_path), "--database", fresh_db)
    assert broken.returncode == 1 and "is not JSON" in broken.stderr
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT version FROM fare_rule_versions").fetchall() == [(3,)]
