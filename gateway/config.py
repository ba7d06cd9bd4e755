"""The gateway's configuration and the one place its secrets live.

A gateway keeps everything in its data directory: the SQLite database and a
secrets file (mode 0600) of named 32-byte secrets, each made at random on first use.
Secrets are never logged; `repr` of a Config does not show them.
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
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with open(self.data_dir / "secrets.lock", "a") as lock:
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


def load(data_dir: str | os.PathLike | None = None) -> Config:
    path = Path(data_dir) if data_dir else default_data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return Config(path)
