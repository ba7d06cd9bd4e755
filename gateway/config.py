"""The gateway's configuration and the one place its secrets live.

A gateway keeps everything in its data directory: the SQLite database and a
secrets file of named 32-byte secrets, each made at random on first use. The
directory is its owner's alone (0700) and so is every file the gateway keeps in it
(0600: the database with its -wal and -shm files, the secrets and their lock).
Secrets are never logged; `repr` of a Config does not show them.

`allow_private_webhooks` lets merchants register webhook endpoints on loopback and
private networks (gateway.webhook_targets); it is for development and tests only.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets as _random
import threading
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = ".tapstack"


def default_data_dir() -> Path:
    return Path(os.environ.get("TAPSTACK_HOME", DEFAULT_HOME)) / "gateway"


@dataclass
class Config:
    data_dir: Path
    currency: str = "CNY"
    allow_private_webhooks: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.db"

    @property
    def secrets_path(self) -> Path:
        return self.data_dir / "secrets.json"

    def secret(self, name: str) -> bytes:
        """The named 32-byte secret (e.g. "issuer_seed"), created at random on first use.

        Safe across threads and processes (gunicorn workers starting together): the
        read-modify-write runs under a lock file, so every process sees one value.
        """
        with self._lock:
            stored = self._read_secrets()
            if name in stored:
                return bytes.fromhex(stored[name])
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with os.fdopen(os.open(self.data_dir / "secrets.lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                stored = self._read_secrets()  # another process may have made it meanwhile
                if name not in stored:
                    stored[name] = _random.token_hex(32)
                    self._write_secrets(stored)
            return bytes.fromhex(stored[name])

    def _read_secrets(self) -> dict[str, str]:
        try:
            return json.loads(self.secrets_path.read_text())
        except FileNotFoundError:
            return {}

    def _write_secrets(self, stored: dict[str, str]) -> None:
        tmp = self.secrets_path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.secrets_path)


PRIVATE_FILES = ("gateway.db", "gateway.db-wal", "gateway.db-shm", "gateway.db.writelock", "secrets.json",
                 "secrets.lock", "deliverer.lock")


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


def load(data_dir: str | os.PathLike | None = None, **settings) -> Config:
    """The configuration of a data directory (made private first); settings are Config's fields."""
    path = Path(data_dir) if data_dir else default_data_dir()
    make_private(path)
    return Config(path, **settings)
