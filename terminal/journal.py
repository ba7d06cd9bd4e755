"""The validator's offline journal: every decision, durable before the rider is told.

One SQLite file in WAL mode with synchronous=FULL, so a commit is on disk when
`record` returns (power loss included). Tables:

    taps   seq (1, 2, ...), id "<terminal id hex>-<seq>", the decision as JSON,
           sent_at / result once the gateway has answered for it
    state  named JSON values: the unfinished purse debits (tear recovery), the
           deny-list, fare rules and issuer keys last downloaded, the place

A tap and the pending debits it leaves are written in one transaction, so a
restart finds both or neither. Rows are never deleted by the validator: a row is
sent until the gateway answers for it (accepted, duplicate or rejected), and the
gateway deduplicates by tap id, so sending one twice is harmless.

Every failure of the file (a full disk, a read-only file system, a file another
program locked) is a JournalError with SQLite's own words; the connection stays usable,
so writes resume by themselves once the disk has room again.

One Journal per thread (the uploader opens its own on the same file).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from terminal.tap import PendingDebit

SCHEMA = """
CREATE TABLE IF NOT EXISTS taps (
    seq      INTEGER PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    at       INTEGER NOT NULL,
    body     TEXT NOT NULL,
    sent_at  INTEGER,
    result   TEXT
);
CREATE INDEX IF NOT EXISTS taps_unsent ON taps (seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS state (
    name      TEXT PRIMARY KEY,
    value     TEXT NOT NULL,
    saved_at  INTEGER NOT NULL
);
"""
PENDING = "pending_debits"
SENT = "taps_sent"  # how many taps the gateway has answered for: unsent = MAX(seq) - this


class JournalError(Exception):
    """The journal cannot be opened or written (disk full, read-only, another terminal's file)."""


class ForeignJournal(JournalError):
    """The file is the journal of another terminal: a setting to fix, not a fault to wait out."""


class Journal:
    def __init__(self, path: str | Path, terminal_id: bytes):
        self.path = Path(path)
        self.terminal_id = bytes(terminal_id).hex()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # its -wal and -shm take this mode
            self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 30000")
            if self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise JournalError(f"{self.path}: cannot use WAL mode")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(SCHEMA)
            owner = self.load("terminal_id")
            if owner is None:
                self.save("terminal_id", self.terminal_id, 0)
            elif owner[0] != self.terminal_id:
                self._db.close()
                raise ForeignJournal(f"{self.path} is the journal of terminal {owner[0]}, not {self.terminal_id}")
        except (sqlite3.Error, OSError) as e:
            raise self._error(e) from None

    def _error(self, e: Exception) -> JournalError:
        try:  # SQLite says "unable to open database file" or "disk I/O error": say why if we can
            read_only = os.statvfs(self.path.parent).f_flag & os.ST_RDONLY
        except OSError:
            read_only = False
        return JournalError(f"{self.path}: {'read-only file system: ' if read_only else ''}{e}")

    # -- taps ---------------------------------------------------------------------------

    def record(self, decision, pending: tuple[PendingDebit, ...] | None = None) -> str:
        """Write decision (and the pending debits after it) durably; its tap id."""
        body = decision.to_json()
        with self._tx():
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM taps").fetchone()[0]
            tap_id = f"{self.terminal_id}-{seq:010d}"
            self._db.execute("INSERT INTO taps (seq, id, at, body) VALUES (?, ?, ?, ?)",
                             (seq, tap_id, body["at"], json.dumps(body, separators=(",", ":"))))
            if pending is not None:
                self._put(PENDING, [d.to_json() for d in pending], body["at"])
        return tap_id

    def unsent(self, limit: int = 500) -> list[dict]:
        """The oldest taps the gateway has not answered for, as upload rows ({"id": ..., **decision})."""
        rows = self._query("SELECT id, body FROM taps WHERE sent_at IS NULL ORDER BY seq LIMIT ?", (int(limit),))
        return [{"id": tap_id, **json.loads(body)} for tap_id, body in rows]

    def mark_sent(self, results: dict[str, str], now: datetime) -> int:
        """Record the gateway's answer per tap id (accepted, duplicate, rejected:<reason>);
        the number of taps newly marked (an answer for a tap already marked changes nothing)."""
        at = int(now.timestamp())
        with self._tx():
            marked = 0
            for tap_id, result in results.items():
                marked += self._db.execute("UPDATE taps SET sent_at = ?, result = ? WHERE id = ? AND sent_at IS NULL",
                                           (at, result, tap_id)).rowcount
            self._add_sent(marked, at)
        return marked

    def mark_unsent(self, now: datetime) -> None:
        """Send everything again (a journal restored from a backup, an audit): the gateway
        answers duplicate for what it has."""
        with self._tx():
            self._db.execute("UPDATE taps SET sent_at = NULL, result = NULL")
            self._put(SENT, 0, now)

    def counts(self) -> dict[str, int]:
        """Taps journalled and taps not yet answered for, without scanning the journal
        (it runs at every tap, and an offline journal grows by thousands a day)."""
        total = self._query("SELECT COALESCE(MAX(seq), 0) FROM taps")[0][0]
        sent = self.load(SENT)
        return {"taps": total, "unsent": total - (sent[0] if sent else 0)}

    def _add_sent(self, n: int, at: int) -> None:
        self._db.execute("INSERT INTO state (name, value, saved_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                         "SET value = CAST(value AS INTEGER) + ?, saved_at = excluded.saved_at",
                         (SENT, str(n), at, n))

    def taps(self) -> list[dict]:
        """Every tap with its upload state (for tests and audits)."""
        rows = self._query("SELECT id, body, sent_at, result FROM taps ORDER BY seq")
        return [{"id": i, **json.loads(b), "sent_at": s, "result": r} for i, b, s, r in rows]

    def accepted_since(self, since: datetime) -> dict[str, datetime]:
        """Card ids and tokens accepted at or after `since`, with their latest time: a restarted
        validator still refuses a repeat tap of a rider it charged just before it went down."""
        found: dict[str, datetime] = {}
        for (body,) in self._query("SELECT body FROM taps WHERE at >= ? ORDER BY seq", (int(since.timestamp()),)):
            tap = json.loads(body)
            identity = tap.get("card_id") or tap.get("token")
            if tap.get("accepted") and identity:
                found[identity] = datetime.fromtimestamp(tap["at"], timezone.utc)
        return found

    # -- named state --------------------------------------------------------------------

    def save(self, name: str, value, saved_at: int | datetime) -> None:
        with self._tx():
            self._put(name, value, saved_at)

    def load(self, name: str) -> tuple[object, int] | None:
        """(value, saved at unix seconds), or None if never saved."""
        rows = self._query("SELECT value, saved_at FROM state WHERE name = ?", (name,))
        return None if not rows else (json.loads(rows[0][0]), rows[0][1])

    def save_intent(self, pending: tuple[PendingDebit, ...], saved_at) -> None:
        """The debits pending once the DEBIT about to be sent is counted: written before it
        goes out, so a validator that dies before journalling the tap still recovers it.
        Durable against the process dying (WAL, not fsynced: the tap's own fsync follows)."""
        try:
            self._db.execute("PRAGMA synchronous = NORMAL")
            try:
                with self._tx():
                    self._put(PENDING, [d.to_json() for d in pending], saved_at)
            finally:
                self._db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as e:
            raise self._error(e) from None

    def probe(self, now: datetime) -> None:
        """Write a small value durably: JournalError while the journal cannot take a tap."""
        self.save("alive", int(now.timestamp()), now)

    def pending_debits(self) -> tuple[PendingDebit, ...]:
        found = self.load(PENDING)
        return tuple(PendingDebit.from_json(d) for d in found[0]) if found else ()

    def close(self) -> None:
        self._db.close()

    def _put(self, name: str, value, saved_at) -> None:
        at = int(saved_at.timestamp()) if isinstance(saved_at, datetime) else int(saved_at)
        self._db.execute("INSERT INTO state (name, value, saved_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at",
                         (name, json.dumps(value, separators=(",", ":")), at))

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise self._error(e) from None

    @contextlib.contextmanager
    def _tx(self):
        """One write transaction; any SQLite failure in it is a JournalError. A failed
        transaction is rolled back, unless SQLite already did (it does on a full disk, and a
        second ROLLBACK would hide the reason behind "no transaction is active")."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._error(e) from None
