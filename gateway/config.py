"""The gateway's configuration and the one place its secrets live.

A gateway has a data directory (default $TAPSTACK_HOME/gateway) and a database:
by default the SQLite file gateway.db in that directory, or the database a URL
names (`--database`, $TAPSTACK_DATABASE_URL; see gateway/store/url.py).

Secrets are named 32-byte values (e.g. "issuer_seed"), each made at random on
first use and the same for every process of the gateway ever after:

- on SQLite, in the data directory's secrets file (mode 0600);
- on PostgreSQL, in the database (table gateway_secrets), so that every node
  of a deployment shares them, each sealed with AES-256-GCM under the node's
  master key: $TAPSTACK_MASTER_KEY (64 hex digits), else the data directory's
  master.key, made at random on first use. Give every node the same master key;
  a node with another one refuses to start rather than serve with other secrets.

The data directory is its owner's alone (0700) and so is every file the gateway
keeps in it (0600: the SQLite database with its -wal and -shm files, the secrets, the
master key and their lock). Secrets are never logged; `repr` of a Config does not show them.

`allow_private_webhooks` lets merchants register webhook endpoints on loopback and
private networks (gateway.http.webhook_targets); it is for development and tests only.

Limits (OWASP API4; docs/security.md), the operator's to set: `rate_limit_per_minute`
requests per merchant, wallet or terminal credential per minute (0: no limit),
`bill_lookups_per_minute` lookups of bills by consumer number per wallet, and
`max_webhook_endpoints` per merchant. The defaults are generous: a busy till or a
benchmark's one wallet stays far below them.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets as _random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = ".tapstack"
MASTER_KEY_ENV = "TAPSTACK_MASTER_KEY"


class SecretsError(Exception):
    """The secrets cannot be read: a wrong master key, or an unreadable file."""


def default_data_dir() -> Path:
    return Path(os.environ.get("TAPSTACK_HOME", DEFAULT_HOME)) / "gateway"


@dataclass
class Config:
    data_dir: Path
    database_url: str | None = None
    currency: str = "CNY"
    allow_private_webhooks: bool = False
    rate_limit_per_minute: int = 30000
    bill_lookups_per_minute: int = 30
    max_webhook_endpoints: int = 16
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _source: object = field(default=None, repr=False, compare=False)

    @property
    def db_path(self) -> Path:
        """The SQLite database file (StoreError for a gateway on another database)."""
        from gateway.store import StoreError
        from gateway.store.url import sqlite_path
        if self.backend != "sqlite":
            raise StoreError(f"this gateway's database is {self.database}, not an SQLite file")
        return sqlite_path(self.database_url, self.data_dir)

    @property
    def backend(self) -> str:
        from gateway.store.url import backend
        return backend(self.database_url)

    @property
    def database(self) -> str:
        """The database, fit to show: the SQLite path, or the URL without its password."""
        from gateway.store.url import redact
        return str(self.db_path) if self.backend == "sqlite" else redact(self.database_url)

    @property
    def secrets_path(self) -> Path:
        return self.data_dir / "secrets.json"

    def open_store(self, **options):
        """The store this configuration names (SQLite migrates itself on open; PostgreSQL never does)."""
        from gateway.store import open_store
        return open_store(self.database_url, self.data_dir, **options)

    def secret(self, name: str) -> bytes:
        """The named 32-byte secret, created at random on first use; the same in every
        process and, on PostgreSQL, on every node."""
        with self._lock:
            if self._source is None:
                self._source = (FileSecrets(self.data_dir) if self.backend == "sqlite"
                                else DatabaseSecrets(self.database_url, master_key(self.data_dir)))
            return self._source.get(name)

    def close(self) -> None:
        """Close what secret() opened (the database secrets' own connection)."""
        with self._lock:
            if isinstance(self._source, DatabaseSecrets):
                self._source.close()
            self._source = None


class FileSecrets:
    """Secrets in data_dir/secrets.json (0600), made under a lock file so that
    processes starting together (gunicorn workers) all see one value."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "secrets.json"

    def get(self, name: str) -> bytes:
        stored = self._read()
        if name in stored:
            return bytes.fromhex(stored[name])
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _lock_file(self.data_dir) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stored = self._read()  # another process may have made it meanwhile
            if name not in stored:
                stored[name] = _random.token_hex(32)
                _write_private(self.path, json.dumps(stored))
        return bytes.fromhex(stored[name])

    def _read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}


class DatabaseSecrets:
    """Secrets in the database, sealed under the master key; the first node to make
    one wins (INSERT ... ON CONFLICT DO NOTHING) and every node reads that one."""

    def __init__(self, url: str, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self.url = url
        self._cipher = AESGCM(key)
        self._store = None
        self._cache: dict[str, bytes] = {}

    def get(self, name: str) -> bytes:
        if name in self._cache:
            return self._cache[name]
        from gateway.store import secrets as secrets_db
        if self._store is None:
            from gateway.store import open_store
            self._store = open_store(self.url, pool_size=1)
        nonce = os.urandom(12)
        fresh = "v1." + base64.b64encode(nonce + self._cipher.encrypt(
            nonce, _random.token_bytes(32), name.encode())).decode()

        def make_or_read(tx) -> str:
            secrets_db.add_if_missing(tx, name=name, sealed=fresh, now_unix=int(time.time()))
            return secrets_db.sealed_value(tx, name)

        self._cache[name] = self._open(name, self._store.write(make_or_read))
        return self._cache[name]

    def _open(self, name: str, sealed: str) -> bytes:
        from cryptography.exceptions import InvalidTag
        try:
            raw = base64.b64decode(sealed.removeprefix("v1."), validate=True)
            return self._cipher.decrypt(raw[:12], raw[12:], name.encode())
        except (ValueError, InvalidTag):
            raise SecretsError(
                f"the database's secret {name!r} does not open with this node's master key: give every node"
                f" the same {MASTER_KEY_ENV} (or the same data-directory master.key)") from None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def master_key(data_dir: Path) -> bytes:
    """$TAPSTACK_MASTER_KEY, else data_dir/master.key (made at random on first use, 0600)."""
    given = os.environ.get(MASTER_KEY_ENV)
    if given:
        try:
            key = bytes.fromhex(given.strip())
        except ValueError:
            key = b""
        if len(key) != 32:
            raise SecretsError(f"{MASTER_KEY_ENV} must be 64 hex digits (32 bytes)")
        return key
    path = Path(data_dir) / "master.key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _lock_file(path.parent) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            _write_private(path, _random.token_hex(32) + "\n")
    try:
        return bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise SecretsError(f"{path} is not 64 hex digits") from None


def _lock_file(data_dir: Path):
    return os.fdopen(os.open(Path(data_dir) / "secrets.lock", os.O_RDWR | os.O_CREAT, 0o600))


PRIVATE_FILES = ("gateway.db", "gateway.db-wal", "gateway.db-shm", "gateway.db.writelock", "secrets.json",
                 "secrets.lock", "master.key", "deliverer.lock")


def make_private(data_dir: Path) -> None:
    """The data directory 0700 and the gateway's files in it 0600: made so, or tightened
    where a gateway of an older release made them readable by everyone."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        data_dir.chmod(0o700)
    for name in PRIVATE_FILES:
        path = data_dir / name
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def create_private(path: Path) -> None:
    """Create the file 0600 if it is not there. For a SQLite database before SQLite opens
    it: SQLite gives the database's -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by the owner only."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(data_dir: str | os.PathLike | None = None, database_url: str | None = None, **settings) -> Config:
    """The configuration of a data directory (made private first) and database URL (None:
    $TAPSTACK_DATABASE_URL, else SQLite in the data directory); settings are Config's fields."""
    from gateway.store.url import backend, from_environment
    url = from_environment(database_url)
    backend(url)  # an unknown scheme is refused here, before anything is made
    path = Path(data_dir) if data_dir else default_data_dir()
    make_private(path)
    return Config(path, url, **settings)
